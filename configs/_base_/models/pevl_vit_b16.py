# PeVL on CLIP ViT-B/16 (the paper's main setting): every switch of the model, with its default.
# Keys are documented in stages/model/pevl.py (DEFAULT_MODEL_CFG) and docs/model.md.
model = dict(
    type='PeVL',
    # quick_gelu=None: the activation the weights were trained with (QuickGELU for 'openai')
    clip=dict(arch='ViT-B-16', pretrained='openai', pretrained_path=None, cache_dir=None, frozen=True,
              quick_gelu=None),
    modalities=['video', 'pose', 'text'],
    num_classes=48,
    num_joints=17,
    num_pose_frames=48,
    num_video_frames=16,
    adapters=dict(video=True, pose=True, text=True, ratio=0.25, text_ratio=0.5, mlp_scale=0.5),
    pose=dict(form='coords', temporal_attn=True, heatmap_size=112, heatmap_sigma=2.0, cls_token=True,
              normalize='crop', motion=False, embedding='shared'),
    text=dict(prompt='label_prompt_type', coarse_type=''),
    ucmr=dict(num_blocks=1, p2v=True, v2p=True, refine_loss=True, background='grouping'),
    fusion='sgmc',
    sgmc=dict(sims=['vs', 'ps', 'fw'], loss='semantic', fw_temperature=0.01),
    lambda_r=0.1,
    train_proj=True,
)
