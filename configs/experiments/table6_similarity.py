_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table6_similarity', table='Table 6', paper_dataset='Diving48', metric='top1')
variants = dict(
    ps=dict(paper_top1=91.0, model=dict(sgmc=dict(sims=['ps']))),
    vs=dict(paper_top1=90.9, model=dict(sgmc=dict(sims=['vs']))),
    fw=dict(paper_top1=90.9, model=dict(sgmc=dict(sims=['fw']))),
    vs_fw=dict(paper_top1=91.4, model=dict(sgmc=dict(sims=['vs', 'fw']))),
    ps_vs=dict(paper_top1=91.3, model=dict(sgmc=dict(sims=['ps', 'vs']))),
    ps_fw=dict(paper_top1=91.4, model=dict(sgmc=dict(sims=['ps', 'fw']))),
    ps_vs_fw=dict(paper_top1=91.9, model=dict(sgmc=dict(sims=['ps', 'vs', 'fw']))),
    # Sec. 4.3.3: strength coefficients replaced by 1 (uniform)
    vanilla_loss=dict(paper_top1=91.4, model=dict(sgmc=dict(loss='vanilla'))),
)
