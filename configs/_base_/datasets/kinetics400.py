# Kinetics-400: 400 classes, train / val (results are reported on val; the test CSV of the first
# release has no labels). HRNet poses. Accepted layouts (the official CSVs, mmaction2's lists): see
# docs/datasets.md. Every data key and its default: stages/data/settings.py (DataSettings).
data = dict(dataset='kinetics400', test_split='val')
