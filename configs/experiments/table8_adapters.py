_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table8_adapters', table='Table 8', paper_dataset='Diving48', metric='top1')


def _ad(v, p, t):
    return dict(adapters=dict(video=v, pose=p, text=t))


variants = dict(
    fff=dict(paper_top1=84.9, model=_ad(False, False, False)),
    tff=dict(paper_top1=85.5, model=_ad(True, False, False)),
    ftf=dict(paper_top1=86.4, model=_ad(False, True, False)),
    fft=dict(paper_top1=86.2, model=_ad(False, False, True)),
    ttf=dict(paper_top1=87.8, model=_ad(True, True, False)),
    ttt=dict(paper_top1=91.9, model=_ad(True, True, True)),
)
