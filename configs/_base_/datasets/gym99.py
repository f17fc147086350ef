# FineGym Gym99: element clips, train (v1.1) / val. HRNet poses (ground-truth athlete boxes with
# dataset_options=dict(boxes='/path/to/boxes.json')).
data = dict(dataset='gym99', test_split='val')
