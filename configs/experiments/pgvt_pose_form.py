# PGVT Table 6, "Pose input forms" (Diving48, ViT-B/16, pose only at 48 frames: row (1) of Table 4
# with the pose given as coordinates or as 112x112 heatmaps). The heatmaps are rendered in the
# forward pass from the cached coordinates (PoseC3D-style, stages/model/pose_embedding.py), so both
# rows train from the same cache entry.
# PGVT Table 5 ("Transformer for pose"): configs/experiments/pgvt_pose_encoder.py.
_base_ = ['../_base_/models/pgvt_vit_b16.py']
experiment = dict(name='pgvt_pose_form', table='PGVT Table 6', paper_dataset='Diving48', metric='top1')
# PGVT Sec. 4: AdamW, lr 8e-6, weight decay 5e-2, 50 epochs. The default schedule (the `xclip` recipe,
# stages/train/schedule.py; docs/training.md says why) reads 8e-6 as the rate of CLIP's own weights and
# trains new modules, every tunable parameter here, at 10x: 8e-5. `_base_/schedules/paper_text.py` trains
# them at 8e-6.
_pose_only = dict(blocks='aim', modalities=['pose'])
# `--dataset demo` (the demo overlay, configs/_base_/datasets/demo.py: its data, the tiny CLIP trained
# from random weights and the CPU schedule), plus: no dropout before the classifier (0.5 on the tiny
# model's 64-wide features keeps it from fitting the demo).
dataset_overrides = dict(demo=dict(model=dict(head=dict(dropout=0.0))))
variants = dict(
    heatmaps=dict(paper_top1=80.1, paper_top5=96.0, paper_gflops=311, paper_params_m=11,
                  model=dict(pose=dict(form='heatmap'), **_pose_only)),
    coordinates=dict(paper_top1=82.6, paper_top5=96.7, paper_gflops=108, paper_params_m=11,
                     model=dict(pose=dict(form='coords'), **_pose_only)),
)
