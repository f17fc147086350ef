# PGVT Table 5, "Transformer for pose" (Diving48, PGVT ViT-B/16, 48 pose + 16 video frames):
# PoseFormer (Zheng et al., ICCV 2021; stages/model/poseformer.py) as the pose stream's pre-trained
# model instead of the CLIP image encoder. Its per-frame joint tokens meet the video in every block's
# R-Adapter (stages/model/pgvt_block.py, pose_clip=False; docs/model.md). The paper's Poseformer is
# "pre-trained"; those weights cannot be had offline, so the poseformer row trains Poseformer from
# random init unless a local checkpoint is given, which is loaded strictly:
#   pipeline train --exp pgvt_pose_encoder --variant poseformer --root /data/diving48 \
#     --cfg-options model.pose.poseformer.checkpoint=/weights/poseformer.bin model.pose.poseformer.frozen=True
_base_ = ['../_base_/models/pgvt_vit_b16.py']
experiment = dict(name='pgvt_pose_encoder', table='PGVT Table 5', paper_dataset='Diving48', metric='top1')
# PGVT Sec. 4: AdamW, lr 8e-6, weight decay 5e-2, 50 epochs. The default schedule (the `xclip` recipe,
# stages/train/schedule.py; docs/training.md says why) reads 8e-6 as the rate of CLIP's own weights and
# trains new modules, every tunable parameter here, at 10x: 8e-5. `_base_/schedules/paper_text.py` trains
# them at 8e-6.
# `--dataset demo`: as configs/experiments/pgvt_components.py (no dropout before the classifier)
dataset_overrides = dict(demo=dict(model=dict(head=dict(dropout=0.0))))
variants = dict(
    poseformer=dict(paper_top1=86.4, paper_top5=97.5, model=dict(pose=dict(encoder='poseformer', cls_token=False))),
    clip=dict(paper_top1=89.5, paper_top5=99.1, model=dict()),
)
