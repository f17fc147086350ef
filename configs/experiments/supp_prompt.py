_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='supp_prompt', table='Supp. Table 4', paper_dataset='Diving48', metric='top1')
variants = dict(
    label_only=dict(paper_top1=91.4, model=dict(text=dict(prompt='label'))),
    label_prompt=dict(paper_top1=91.7, model=dict(text=dict(prompt='label_prompt'))),
    label_prompt_type=dict(paper_top1=91.9, model=dict(text=dict(prompt='label_prompt_type'))),
)
