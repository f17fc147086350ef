# What pose at 48 frames buys, in miniature (docs/demo.md): on the demo, three class pairs differ
# only in a fast motion that the 16 segment-middle frames alias exactly (no turn vs two turns, two
# vs three kicks, two vs three waves). Video at 16 frames and pose at 16 frames cannot tell them
# apart; pose at 48 frames can, and PeVL (16 video + 48 pose frames) with it.
#   pipeline extract --dataset demo && pipeline train --exp demo_pose_rate
# Every row reports `fine_pair_top1`, the top-1 over the val clips of those six classes.
# The model, data and schedule are the demo's (configs/experiments/demo.py): the tiny CLIP with
# random weights, trained with its towers (model.clip.frozen=False). The unimodal rows are Table 7's
# text-free V and P encoders (linear head, cross-entropy).
_base_ = ['./demo.py']
experiment = dict(name='demo_pose_rate', table='Demo: pose frame rate', paper_dataset='demo', metric='top1')
_uni = dict(type='LinearHeadPeVL', ucmr=dict(num_blocks=0))
variants = dict(
    _delete_=True,
    v16=dict(paper_top1=None, model=dict(modalities=['video'], **_uni)),
    p16=dict(paper_top1=None, model=dict(modalities=['pose'], num_pose_frames=16, **_uni)),
    p48=dict(paper_top1=None, model=dict(modalities=['pose'], num_pose_frames=48, **_uni)),
    pevl=dict(paper_top1=None, model=dict()),
)
