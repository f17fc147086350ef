# PGVT on CLIP ViT-B/16 (PGVT paper, Diving48 setting: 48 pose + 16 video frames): every switch of
# the model, with its default. Keys are documented in stages/model/pgvt.py (DEFAULT_PGVT_CFG) and
# docs/model.md ("PGVT").
model = dict(
    type='PGVT',
    # frozen=False trains the towers too (the demo's random tiny CLIP); the papers keep them frozen;
    # quick_gelu=None: the activation the weights were trained with (QuickGELU for 'openai'), as PeVL
    clip=dict(arch='ViT-B-16', pretrained='openai', pretrained_path=None, cache_dir=None, frozen=True,
              quick_gelu=None),
    modalities=['pose', 'video'],
    blocks='pgvt',
    num_classes=48,
    num_joints=17,
    num_pose_frames=48,
    num_video_frames=16,
    adapters=dict(ratio=0.25, s_pose=0.5, s_video=0.5),
    pgvt=dict(temporal=True, refine_pose=True, refine_video=True, bottleneck=True),
    aim=dict(temporal=True),
    pose=dict(form='coords', cls_token=True, heatmap_size=112, heatmap_sigma=2.0),
    head=dict(dropout=0.5),
)
