_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='supp_num_ucmr', table='Supp. Fig. 7', paper_dataset='Diving48', metric='top1')
# Fig. 7 is a plot without printed values; only one block's 91.9 (main paper) is known.
variants = dict(
    ucmr1=dict(paper_top1=91.9, model=dict(ucmr=dict(num_blocks=1))),
    ucmr2=dict(paper_top1=None, model=dict(ucmr=dict(num_blocks=2))),
    ucmr3=dict(paper_top1=None, model=dict(ucmr=dict(num_blocks=3))),
    ucmr4=dict(paper_top1=None, model=dict(ucmr=dict(num_blocks=4))),
)
