# The demo: PeVL with the tiny CLIP config on the generated demo dataset, trained on CPU.
#   pipeline extract --dataset demo && pipeline train --exp demo
# The tiny CLIP (112 px, patch 16, width 64, 2 layers) has RANDOM weights: no pretrained weights
# exist offline. Its frozen towers stay frozen (random feature extractors); the adapters, joint
# embedding, projections, UCMR and temperatures train from scratch. Measured: 53.8% top-1 on the
# 80 val clips (chance 10%) in about 5 minutes on 2 CPU cores (docs/training.md); far from the
# paper's numbers, it shows the pipeline learns from the cache.
# `pipeline train --exp ANY --dataset demo` applies this file's data, train and model.clip /
# frame counts to any experiment.
_base_ = ['../_base_/models/pevl_tiny.py', '../_base_/schedules/demo_cpu.py', '../_base_/datasets/demo.py']
experiment = dict(name='demo', table='Demo', paper_dataset='demo', metric='top1')
model = dict(
    num_video_frames=16,    # all cached frames (T_v)
    num_pose_frames=48,     # the paper's T: the demo's aliasing pairs need it (docs/demo.md)
    text=dict(coarse_type=''),
)
variants = dict(
    pevl=dict(paper_top1=None, model=dict()),
)
