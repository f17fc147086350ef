# Training schedule of PeVL (paper Sec. 4.1): AdamW, base lr 8e-6, weight decay 0.05, 50 epochs,
# linear warm-up for the first 3 epochs then cosine decay to zero; 3 crops x 1 clip at test.
# Read by stages/train/config.py, which turns `train` into mmengine's optim_wrapper,
# param_scheduler, train_cfg, dataloaders and hooks. Every key can be overridden with
# `--cfg-options train.KEY=VALUE` (e.g. train.lr=3e-4 train.batch_size=8).
train = dict(
    max_epochs=50,
    warmup_epochs=3,
    warmup_start_factor=1e-3,   # lr at the first iteration = lr * this (linear warm-up, per iteration)
    lr=8e-6,                    # paper; AIM (which PeVL builds on) used 3e-4 at batch 64
    weight_decay=0.05,          # on weight matrices; none on biases, norms, temperatures
    betas=(0.9, 0.999),
    eps=1e-8,
    batch_size=16,              # per process (GPU); the paper does not state it (one V100 32G)
    test_batch_size=None,       # default: batch_size (each test clip is 3 views)
    accumulative_counts=1,      # gradient accumulation: optimiser step every N batches
    num_workers=4,              # DataLoader workers per process
    amp='bfloat16',             # autocast dtype on CUDA ('bfloat16', 'float16' or None); CPU runs fp32
    clip_grad=None,             # e.g. dict(max_norm=1.0)
    flip_prob=0.5,
    random_pose_offsets=True,   # training pose frames: one random frame per segment (False: segment middles)
    val_interval=5,             # validate every N epochs (and after the last); 0: never during training
    log_interval=20,            # iterations between log lines
    max_keep_ckpts=2,           # a checkpoint is written every epoch; older ones are removed
    seed=0,
    deterministic=False,
)
# Raw mmengine config keys merged last, for anything `train` does not cover, e.g.
# `--cfg-options runner.default_hooks.logger.interval=5` or runner.env_cfg.cudnn_benchmark=True.
runner = dict()
