# FineGym Gym288: element clips, train (v1.1) / val. HRNet poses (ground-truth athlete boxes with
# dataset_options=dict(boxes='/path/to/boxes.json')).
data = dict(dataset='gym288', test_split='val')
