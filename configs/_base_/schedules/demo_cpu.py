# A short CPU schedule for the demo: the tiny CLIP (configs/_base_/models/pevl_tiny.py) starts from
# RANDOM weights (nothing pretrained is available offline), so it trains from scratch (towers
# included, model.clip.frozen=False in configs/experiments/demo.py) with a much higher lr than the
# paper's fine-tuning lr. Sized for 2 CPU cores: about 5 minutes for PeVL when the cores are free
# (docs/demo.md has the measured time and accuracy).
_base_ = ['./adamw_50e.py']
train = dict(
    max_epochs=40,
    warmup_epochs=1,
    lr=2e-3,
    weight_decay=0.05,
    batch_size=16,              # 15 steps an epoch on the 240 training clips
    num_workers=1,
    # no horizontal flip: the demo has a left/right class pair (kick with the right leg twice vs
    # with the left leg twice), which a mirror image turns into each other
    flip_prob=0.0,
    amp=None,
    val_interval=10,
    log_interval=10,
    max_keep_ckpts=1,
)
