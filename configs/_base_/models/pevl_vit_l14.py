_base_ = ['./pevl_vit_b16.py']
model = dict(clip=dict(arch='ViT-L-14'))
