_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='ucmr_ablate', table='Table 5', paper_dataset='Diving48', metric='top1')
variants = dict(
    pevl=dict(paper_top1=91.9, model=dict()),
    wo_ucmr=dict(paper_top1=88.9, model=dict(ucmr=dict(num_blocks=0))),
    wo_p2v=dict(paper_top1=91.1, model=dict(ucmr=dict(p2v=False))),
    wo_v2p=dict(paper_top1=90.4, model=dict(ucmr=dict(v2p=False))),
    wo_refine_sup=dict(paper_top1=91.0, model=dict(ucmr=dict(refine_loss=False))),
)
