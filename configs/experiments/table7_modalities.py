_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table7_modalities', table='Table 7', paper_dataset='Diving48', metric='top1')
# Except PeVL, video and pose are concatenated and text uses the vanilla contrastive loss;
# without text a linear head is trained with cross-entropy. All encoders have adapters.
_no_ucmr = dict(ucmr=dict(num_blocks=0))
_concat = dict(fusion='concat', sgmc=dict(loss='vanilla'), **_no_ucmr)
variants = dict(
    v=dict(paper_top1=62.9, paper_gflops=275, paper_params_m=7,
           model=dict(type='LinearHeadPeVL', modalities=['video'], **_no_ucmr)),
    p=dict(paper_top1=82.6, paper_gflops=108, paper_params_m=11,
           model=dict(type='LinearHeadPeVL', modalities=['pose'], **_no_ucmr)),
    vp=dict(paper_top1=86.2, paper_gflops=393, paper_params_m=22,
            model=dict(type='LinearHeadPeVL', modalities=['video', 'pose'], **_no_ucmr)),
    vt=dict(paper_top1=65.1, paper_gflops=364, paper_params_m=13,
            model=dict(modalities=['video', 'text'], **_concat)),
    pt=dict(paper_top1=83.8, paper_gflops=197, paper_params_m=17,
            model=dict(modalities=['pose', 'text'], **_concat)),
    vpt=dict(paper_top1=87.3, paper_gflops=482, paper_params_m=28,
             model=dict(modalities=['video', 'pose', 'text'], **_concat)),
    pevl=dict(paper_top1=91.9, paper_gflops=510, paper_params_m=32, model=dict()),
)
