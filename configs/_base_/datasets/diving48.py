# Diving48 (V2 annotations preferred): 48 classes, train / test. HRNet poses. Every data key and its
# default: stages/data/settings.py (DataSettings); stage-one settings: stages/extract/settings.py.
data = dict(dataset='diving48')
