# HAA500: 500 classes, train / val / test (see docs/datasets.md for the split rule). HRNet poses.
data = dict(dataset='haa500')
