# Recipe `aim`: AIM's Diving48 training (taoyang1122/adapt-image-models,
# configs/recognition/vit/vitclip_base_diving48.py, which PeVL's video side and its test protocol
# follow): AdamW lr 3e-4 for the adapters (AIM's only new modules, so one lr for all: lr_mult 1),
# betas (0.9, 0.999), weight decay 0.05 with none on class / position embeddings and LayerNorms
# (paramwise_cfg custom_keys; biases are decayed), linear warm-up over 2.5 epochs from lr x 0.1
# (mmcv's default warmup_ratio) then cosine to 0, 50 epochs, no label smoothing, no mixup.
# AIM's batch is 64 (8 GPUs x 8 clips): at another batch, scale train.lr as you see fit.
# Not carried over: its drop path 0.2 and fp16 optimizer hook.
# Use it: add '../_base_/schedules/aim.py' to an experiment's _base_ (after its model).
train = dict(
    lr=3e-4,
    betas=(0.9, 0.999),
    warmup_epochs=2.5,
    warmup_start_factor=0.1,
    no_decay=('norm', 'embedding', 'scalar'),
    label_smoothing=0.0,
    mixup_alpha=0.0,
    param_groups=dict(video=dict(lr_mult=1.0), pose=dict(lr_mult=1.0), ucmr=dict(lr_mult=1.0),
                      sgmc=dict(lr_mult=1.0), text=dict(lr_mult=1.0), head=dict(lr_mult=1.0)),
)
