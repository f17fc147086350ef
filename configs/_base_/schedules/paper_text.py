# Recipe `paper_text`: the papers' text read alone. PeVL Sec. 4.1 ("AdamW optimizer with a base
# learning rate of 8e-6 ... 50 epochs, weight decay 5e-2 ... warmed up for the first 3 epochs and
# decayed to zero according to a cosine schedule"; PGVT Sec. 4.1 states the same numbers), with one
# learning rate for every tunable parameter, AdamW's default betas, no label smoothing and no
# mixup (the text names none of them). This was the pipeline's schedule before issue 20.
# Use it: add '../_base_/schedules/paper_text.py' to an experiment's _base_ (after its model).
# Every key and the default recipe (xclip): stages/train/schedule.py; docs/training.md compares them.
train = dict(
    betas=(0.9, 0.999),
    label_smoothing=0.0,
    mixup_alpha=0.0,
    param_groups=dict(video=dict(lr_mult=1.0), pose=dict(lr_mult=1.0), ucmr=dict(lr_mult=1.0),
                      sgmc=dict(lr_mult=1.0), text=dict(lr_mult=1.0), head=dict(lr_mult=1.0)),
)
