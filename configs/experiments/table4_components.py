_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table4_components', table='Table 4', paper_dataset='Diving48', metric='top1')
_concat = dict(fusion='concat', sgmc=dict(loss='vanilla'))
variants = dict(
    baseline=dict(paper_top1=60.2, model=dict(type='CLIPBaseline')),
    plus_pose=dict(paper_top1=80.3, model=dict(
        adapters=dict(video=False, pose=False, text=False), ucmr=dict(num_blocks=0), **_concat)),
    plus_adapters=dict(paper_top1=87.3, model=dict(ucmr=dict(num_blocks=0), **_concat)),
    plus_ucmr=dict(paper_top1=90.6, model=dict(**_concat)),
    plus_sgmc=dict(paper_top1=91.9, model=dict()),
)
