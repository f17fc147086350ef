# The demo: PeVL with the tiny CLIP config on the generated demo dataset, trained on CPU.
#   pipeline extract --dataset demo && pipeline train --exp demo
# configs/_base_/datasets/demo.py is the demo overlay: the demo's data, its CPU schedule, the tiny CLIP
# (random weights, towers trained) and the pose switches skeleton models use (docs/demo.md has what
# they buy and the measured accuracy and time). `pipeline train --exp ANY --dataset demo` applies the
# same overlay to any experiment. configs/experiments/demo_pose_rate.py compares video and pose at 16
# and 48 frames.
_base_ = ['../_base_/datasets/demo.py']  # the model: PeVL (the default type)
experiment = dict(name='demo', table='Demo', paper_dataset='demo', metric='top1')
model = dict(
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
