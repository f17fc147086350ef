_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='supp_tattn', table='Supp. Table 3', paper_dataset='Diving48', metric='top1')
variants = dict(
    wo_tattn=dict(paper_top1=70.0, model=dict(pose=dict(temporal_attn=False))),
    pevl=dict(paper_top1=91.9, model=dict()),
)
