# A short CPU schedule for the demo: the tiny CLIP (configs/_base_/models/pevl_tiny.py) starts from
# RANDOM weights (nothing pretrained is available offline), so it trains from scratch with a much
# higher lr than the paper's fine-tuning lr. Sized for 2 CPU cores: about 5 minutes when the
# cores are free (docs/training.md has the measured time and accuracy).
_base_ = ['./adamw_50e.py']
train = dict(
    max_epochs=40,
    warmup_epochs=1,
    lr=3e-3,
    weight_decay=0.05,
    batch_size=16,
    num_workers=1,
    # no horizontal flip: the demo has a left/right class pair (kick with the right leg twice vs
    # with the left leg twice), which a mirror image turns into each other
    flip_prob=0.0,
    amp=None,
    val_interval=8,
    log_interval=5,
    max_keep_ckpts=1,
)
