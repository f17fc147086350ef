# PeVL Table 2, Gym99: PeVL on ViT-B/16 and ViT-L/14 (the paper's mean class accuracy: 91.6 and
# 91.8).
#   pipeline extract --dataset gym99 --root /data/gym99 -o split_version=1.0                  # ViT-B/16: 16-pixel grid
#   pipeline extract --dataset gym99 --root /data/gym99 -o split_version=1.0 --grid-cell 14   # ViT-L/14: 14-pixel grid
#   pipeline train --exp table2_gym99 --root /data/gym99 --cfg-options model.clip.pretrained_path=...
# (the weights: OpenAI's ViT-B-16.pt / ViT-L-14.pt or any form docs/install.md lists; a variant at a
# time with --variant vit_b16 / vit_l14, each with its own file).
_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table2_gym99', table='Table 2', paper_dataset='Gym99', metric='top1')
variants = dict(
    vit_b16=dict(paper_top1=96.5, paper_mean_class_acc=91.6, model=dict()),
    # ViT-L/14 (open_clip ViT-L-14, OpenAI's ViT-L-14.pt): 14-pixel patches read 14-pixel mask grids,
    # so its entry is extracted with --grid-cell 14 (short side 256 rounds to 252 = 18 cells); the
    # variant's `data` makes the lookup find (or name the command that makes) that entry
    vit_l14=dict(paper_top1=97.0, paper_mean_class_acc=91.8, model=dict(clip=dict(arch='ViT-L-14')),
                 data=dict(extract=dict(grid_cell=14))),
)
