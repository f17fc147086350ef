# PeVL supplement Table 1, "Ablation of the pose encoder g_p" (Diving48, ViT-B/16, 16 video + 48 pose
# frames): PoseFormer (Zheng et al., ICCV 2021; stages/model/poseformer.py) instead of the frozen CLIP
# image encoder for the pose, everything else the full PeVL. The paper uses a Poseformer pre-trained
# on Human3.6M, "frozen and added with learnable adapters"; those weights cannot be had offline, so
# the poseformer row trains Poseformer from random init (all of it, with its adapters) unless a local
# checkpoint is given, which is loaded strictly:
#   pipeline train --exp supp_pose_encoder --variant poseformer --root /data/diving48 \
#     --cfg-options model.pose.poseformer.checkpoint=/weights/poseformer.bin model.pose.poseformer.frozen=True
# (the reference's checkpoints are 81, 27 or 9 frames of Human3.6M's joints: docs/model.md, "Poseformer").
_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='supp_pose_encoder', table='Supp. Table 1', paper_dataset='Diving48', metric='top1')
variants = dict(
    poseformer=dict(paper_top1=88.0, paper_top5=97.9, model=dict(pose=dict(encoder='poseformer', cls_token=False))),
    clip=dict(paper_top1=91.9, paper_top5=99.6, model=dict()),
)
