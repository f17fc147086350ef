# PGVT on the project's tiny open_clip model (stages/model/PeVL-tiny.json: 112 px, patch 16 so
# g = 7, width 64, 2 layers) with random weights: tests and the demo, never a download.
_base_ = ['./pgvt_vit_b16.py']
model = dict(
    clip=dict(arch='PeVL-tiny', pretrained=None),
    num_pose_frames=8,
    num_video_frames=4,
)
