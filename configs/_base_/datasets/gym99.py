# FineGym Gym99: element clips, train (v1.1) / val. HRNet poses (ground-truth athlete
# boxes with dataset_options=dict(boxes='/path/to/boxes.json')).
data = dict(
    dataset='gym99',
    root=None,
    pose_source=None,
    pose_checkpoint=None,
    extract=dict(num_frames=16, short_side=256, grid_cell=16),
    dataset_options=dict(),
    train_split='train',
    test_split='val',
)
