# The demo: PeVL with the tiny CLIP config on the generated demo dataset, trained on CPU.
#   pipeline extract --dataset demo && pipeline train --exp demo
# The tiny CLIP (112 px, patch 16, width 64, 2 layers) has RANDOM weights: no pretrained weights
# exist offline, so there is nothing to preserve, and the demo trains its towers too
# (model.clip.frozen=False; real CLIP stays frozen by default, as in the papers). Pose enters as
# skeleton action models feed it: coordinates relative to the person (pose.normalize='person'),
# each joint's velocity (pose.motion=True) and a first embedding layer per joint
# (pose.embedding='per_joint'). docs/demo.md has
# what this buys and the measured accuracy and time (configs/experiments/demo_pose_rate.py
# compares video and pose at 16 and 48 frames).
# `pipeline train --exp ANY --dataset demo` applies this file's data, train and model.clip /
# frame counts / pose.normalize to any experiment.
_base_ = ['../_base_/models/pevl_tiny.py', '../_base_/schedules/demo_cpu.py', '../_base_/datasets/demo.py']
experiment = dict(name='demo', table='Demo', paper_dataset='demo', metric='top1')
model = dict(
    clip=dict(frozen=False),
    num_video_frames=16,    # all cached frames (T_v)
    num_pose_frames=48,     # the paper's T: the demo's aliasing pairs need it (docs/demo.md)
    pose=dict(normalize='person', motion=True, embedding='per_joint'),
    text=dict(coarse_type=''),
    # The vanilla contrastive loss (strength coefficients 1): with the semantic loss the tiny
    # random-weight text tower's phrase similarities steer the loss, and PeVL trained worse than
    # pose alone (docs/demo.md); real CLIP keeps the paper's semantic loss.
    sgmc=dict(loss='vanilla'),
    # No refinement loss (Sec. 3.4's L_r): with it the tiny model's fine pairs collapsed (61.2% top-1,
    # 50.0% fine pairs); without it 80.0% / 66.7% (docs/demo.md). UCMR's blocks stay.
    ucmr=dict(refine_loss=False),
)
variants = dict(
    pevl=dict(paper_top1=None, model=dict()),
)
