# Your own dataset (`pipeline extract --dataset custom --root DIR`, docs/datasets.md): train.csv is
# the training split and val.csv the one evaluated (with a test.csv: -c data.test_split=test).
# The entry is looked up by what extract was asked for: the coarse type
# (-c data.dataset_options.coarse_type=WORD, extract's --coarse-type), the stage-one settings and the
# pose source's options (not the root: two copies with the same options both answer, the newest
# wins); or name it: --entry KEY.
data = dict(dataset='custom', test_split='val')
