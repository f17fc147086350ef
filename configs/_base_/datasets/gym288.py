# FineGym Gym288: element clips, train v1.0 / val. HRNet poses (ground-truth athlete boxes with
# dataset_options=dict(boxes='/path/to/boxes.json')).
# split_version='1.0': both papers train on "23k training" clips (PeVL and PGVT, sec. 4.1), v1.0's
# 22,671 (mmaction2's and pyskl's gym_2d.pkl too); v1.1 has 29,334. Extract with
# `-o split_version=1.0`; `-c data.dataset_options.split_version=1.1` trains on v1.1 instead.
data = dict(dataset='gym288', test_split='val', dataset_options=dict(split_version='1.0'))
