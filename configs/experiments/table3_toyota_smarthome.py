# PeVL Table 3 (right), Toyota-Smarthome: PeVL on ViT-B/16 and ViT-L/14. The paper reports mean
# class accuracy only (73.3 and 73.8: paper_mean_class_acc, beside our mean_class_acc), so paper_top1 is None.
#   pipeline extract --dataset toyota_smarthome --root /data/toyota_smarthome                   # ViT-B/16: 16-pixel grid
#   pipeline extract --dataset toyota_smarthome --root /data/toyota_smarthome --grid-cell 14    # ViT-L/14: 14-pixel grid
#   pipeline train --exp table3_toyota_smarthome --root /data/toyota_smarthome --cfg-options model.clip.pretrained_path=...
# (the weights: OpenAI's ViT-B-16.pt / ViT-L-14.pt or any form docs/install.md lists; a variant at a
# time with --variant vit_b16 / vit_l14, each with its own file).
_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table3_toyota_smarthome', table='Table 3', paper_dataset='Toyota Smarthome', metric='mean_class_acc')
variants = dict(
    vit_b16=dict(paper_top1=None, paper_mean_class_acc=73.3, model=dict()),
    # ViT-L/14 (open_clip ViT-L-14, OpenAI's ViT-L-14.pt): 14-pixel patches read 14-pixel mask grids,
    # so its entry is extracted with --grid-cell 14 (short side 256 rounds to 252 = 18 cells); the
    # variant's `data` makes the lookup find (or name the command that makes) that entry
    vit_l14=dict(paper_top1=None, paper_mean_class_acc=73.8, model=dict(clip=dict(arch='ViT-L-14')),
                 data=dict(extract=dict(grid_cell=14))),
)
