# Diving48 (V2 annotations preferred): 48 classes, train / test. HRNet poses.
_base_ = ['./real_dataset.py']
data = dict(dataset='diving48')
