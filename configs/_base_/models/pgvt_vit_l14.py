# PGVT on CLIP ViT-L/14 (PGVT Tables 1-3: 265M tunable parameters, 2227 GFLOPs at 48 + 16 frames).
_base_ = ['./pgvt_vit_b16.py']
model = dict(clip=dict(arch='ViT-L-14'))
