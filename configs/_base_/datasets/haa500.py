# HAA500: 500 classes, train / val / test (see docs/datasets.md for the split rule). HRNet poses.
data = dict(
    dataset='haa500',
    root=None,
    pose_source=None,
    pose_checkpoint=None,
    extract=dict(num_frames=16, short_side=256, grid_cell=16),
    dataset_options=dict(),
    train_split='train',
    test_split='test',
)
