# FineGym Gym99: element clips, train v1.0 / val. HRNet poses (ground-truth athlete boxes with
# dataset_options=dict(boxes='/path/to/boxes.json')).
# split_version='1.0': both papers train on "20k training" clips (PeVL and PGVT, sec. 4.1), v1.0's
# 20,484 (mmaction2's and pyskl's gym_2d.pkl too); v1.1 has 26,320. Extract with
# `-o split_version=1.0`; `-c data.dataset_options.split_version=1.1` trains on v1.1 instead.
data = dict(dataset='gym99', test_split='val', dataset_options=dict(split_version='1.0'))
