# A short CPU schedule for the demo: the tiny CLIP (configs/_base_/models/pevl_tiny.py) starts from
# RANDOM weights (nothing pretrained is available offline), so it trains from scratch (towers
# included) with a much higher lr than the paper's fine-tuning lr. Sized for 2 CPU cores: about 5
# minutes for PeVL when the cores are free (docs/demo.md has the measured time and accuracy). Every
# key and its default (the xclip recipe): stages/train/schedule.py (ScheduleSettings). Batch 16
# (the default): 15 steps an epoch on the 240 training clips. The demo keeps its own recipe: one lr
# for every tunable parameter (the towers train from scratch with the new modules), AdamW's default
# betas, no label smoothing, no mixup (docs/demo.md; how the recipes train on it: docs/training.md).
train = dict(
    betas=(0.9, 0.999),
    label_smoothing=0.0,
    mixup_alpha=0.0,
    param_groups=dict(video=dict(lr_mult=1.0), pose=dict(lr_mult=1.0), ucmr=dict(lr_mult=1.0),
                      sgmc=dict(lr_mult=1.0), text=dict(lr_mult=1.0), head=dict(lr_mult=1.0)),
    max_epochs=40,
    warmup_epochs=1,
    lr=2e-3,
    amp=None,
    val_interval=10,
    log_interval=10,
    max_keep_ckpts=1,
)
