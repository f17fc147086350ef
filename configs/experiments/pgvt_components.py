# PGVT Table 4, "Effectiveness of proposed components" (Diving48, ViT-B/16, 48 pose + 16 video
# frames unless a row says otherwise), with the paper's Top-1 / Top-5, GFLOPs and tunable params.
#   pipeline stats --exp pgvt_components      # our GFLOPs / params beside the paper's
#   pipeline train --exp pgvt_components      # every row, in this order
# (1)-(3) are AIM's baseline architecture (frozen ViT with AIM's temporal, spatial and MLP
# adapters, stages/model/aim.py) on one modality or two; (4)-(7) are PGVT blocks with a part
# switched off. docs/model.md ("PGVT") explains each row's cost beside the paper's.
_base_ = ['../_base_/models/pgvt_vit_b16.py']
experiment = dict(name='pgvt_components', table='PGVT Table 4', paper_dataset='Diving48', metric='top1')
# PGVT Sec. 4: AdamW, lr 8e-6, weight decay 5e-2, 50 epochs. The default schedule (the `xclip` recipe,
# stages/train/schedule.py; docs/training.md says why) reads 8e-6 as the rate of CLIP's own weights and
# trains new modules, every tunable parameter here, at 10x: 8e-5. `_base_/schedules/paper_text.py` trains
# them at 8e-6.
# Every value can be overridden (--cfg-options train.lr=...).
_aim = dict(blocks='aim')
# `--dataset demo` (the demo overlay, configs/_base_/datasets/demo.py: its data, the tiny CLIP trained
# from random weights and the CPU schedule), plus: no dropout before the classifier (0.5 on the tiny
# model's 64-wide features keeps it from fitting the demo).
dataset_overrides = dict(demo=dict(model=dict(head=dict(dropout=0.0))))
variants = dict(
    # (1) pose only: the pose tokens through AIM's blocks
    pose_only=dict(paper_top1=82.6, paper_top5=96.7, paper_gflops=108, paper_params_m=11,
                   model=dict(modalities=['pose'], **_aim)),
    # (2i), (2ii) video only: AIM itself, 16 and 32 frames. 32 frames need an entry that caches 32
    # (`pipeline extract --dataset diving48 --num-frames 32`); this row looks that entry up.
    video_only_16=dict(paper_top1=85.9, paper_top5=98.0, paper_gflops=405, paper_params_m=11,
                       model=dict(modalities=['video'], num_video_frames=16, **_aim)),
    video_only_32=dict(paper_top1=87.0, paper_top5=98.2, paper_gflops=850, paper_params_m=11,
                       model=dict(modalities=['video'], num_video_frames=32, **_aim),
                       data=dict(extract=dict(num_frames=32))),
    # (3) late fusion, two-stage: starts from the final weights of (1) and (2i) of this same sweep
    # (work_dirs/<experiment>/pose_only, .../video_only_16; names under 'pose_' from the first,
    # 'video_' from the second), concatenates their features, fine-tunes all of it with a new head
    late_fusion=dict(paper_top1=88.1, paper_top5=98.8, paper_gflops=513, paper_params_m=23,
                     model=dict(modalities=['pose', 'video'], **_aim),
                     init_from=dict(pose_only=['pose_'], video_only_16=['video_'])),
    # (4) PGVT without the T module (eq. 1)
    no_tattn=dict(paper_top1=67.1, paper_top5=79.1, paper_gflops=466, paper_params_m=68,
                  model=dict(pgvt=dict(temporal=False))),
    # (5) R-Adapter -> two parallel adapters (no cross-modal attention)
    two_adapters=dict(paper_top1=87.6, paper_top5=98.4, paper_gflops=383, paper_params_m=18,
                      model=dict(pgvt=dict(refine_pose=False, refine_video=False))),
    # (6i), (6ii) one stream of the R-Adapter off
    no_refined_pose=dict(paper_top1=89.2, paper_top5=99.0, paper_gflops=437, paper_params_m=46,
                         model=dict(pgvt=dict(refine_pose=False))),
    no_refined_video=dict(paper_top1=88.0, paper_top5=98.8, paper_gflops=437, paper_params_m=46,
                          model=dict(pgvt=dict(refine_video=False))),
    # (7) PGVT
    pgvt=dict(paper_top1=89.5, paper_top5=99.1, paper_gflops=495, paper_params_m=75, model=dict()),
)
