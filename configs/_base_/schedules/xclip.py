# Recipe `xclip`: the default, so the schema (stages/train/schedule.py, ScheduleSettings) holds all of
# it and this file states nothing; it names where each value comes from (docs/training.md says why
# it is the default).
# * PeVL Sec. 4.1: AdamW, "base learning rate of 8e-6", weight decay 0.05, 50 epochs, 3 warm-up
#   epochs, cosine to zero.
# * X-CLIP's code (microsoft/VideoX, X-CLIP/utils/optimizer.py), whose base learning rate 8e-6 the
#   paper's is: CLIP's own weights at the base lr, the modules X-CLIP adds at 10x it
#   (param_groups.*.lr_mult = 10; here every tunable module is new: CLIP stays frozen), AdamW betas
#   (0.9, 0.98), eps 1e-8, no weight decay on 1-d parameters, biases and position embeddings
#   (no_decay: norm, bias, embedding, scalar).
# * X-CLIP's utils/config.py: AUG.LABEL_SMOOTH 0.1 (label_smoothing), AUG.MIXUP 0.8 (mixup_alpha;
#   its CutMix switch is not done: stages/train/mixup.py).
# Not taken from X-CLIP: its 30 epochs, 5 warm-up epochs and weight decay 0.001 (the paper states
# its own), its colour jitter and grey-scale augmentation (not in this pipeline).
train = dict()
