# PeVL supplement Table 2 (comparison to the state of the art on Kinetics-400): PeVL on ViT-B/16 and
# ViT-L/14 with 32 pose + 32 video frames (the table's "32+32").
#   pipeline extract --dataset kinetics400 --root /data/kinetics400 --num-frames 32                  # ViT-B/16
#   pipeline extract --dataset kinetics400 --root /data/kinetics400 --num-frames 32 --grid-cell 14   # ViT-L/14
#   pipeline train --exp supp_table2_kinetics400 --root /data/kinetics400 --cfg-options model.clip.pretrained_path=...
# (a variant at a time with --variant vit_b16 / vit_l14, each with its weights file). The paper's
# GFLOPs and parameters against ours: docs/model.md, "Kinetics-400 rows".
_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='supp_table2_kinetics400', table='Supp. Table 2', paper_dataset='Kinetics-400', metric='top1')
# 400 classes: what a run reads from its entry, stated so `pipeline stats` counts the 400-way head
model = dict(num_classes=400, num_pose_frames=32, num_video_frames=32)
data = dict(extract=dict(num_frames=32))
variants = dict(
    vit_b16=dict(paper_top1=86.0, paper_top5=97.1, paper_gflops=815, paper_params_m=43, model=dict()),
    # ViT-L/14: 14-pixel patches read 14-pixel mask grids, so its entry is extracted with --grid-cell 14
    vit_l14=dict(paper_top1=89.5, paper_top5=98.1, paper_gflops=944, paper_params_m=112,
                 model=dict(clip=dict(arch='ViT-L-14')), data=dict(extract=dict(grid_cell=14))),
)
