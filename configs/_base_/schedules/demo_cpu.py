# A short CPU schedule for the demo: the tiny CLIP (configs/_base_/models/pevl_tiny.py) starts from
# RANDOM weights (nothing pretrained is available offline), so it trains from scratch (towers
# included) with a much higher lr than the paper's fine-tuning lr. Sized for 2 CPU cores: about 5
# minutes for PeVL when the cores are free (docs/demo.md has the measured time and accuracy). Every
# key and its default (the paper's schedule): stages/train/schedule.py (ScheduleSettings). Batch 16
# (the default): 15 steps an epoch on the 240 training clips.
train = dict(
    max_epochs=40,
    warmup_epochs=1,
    lr=2e-3,
    amp=None,
    val_interval=10,
    log_interval=10,
    max_keep_ckpts=1,
)
