# Diving48 (V2 annotations preferred): 48 classes, train / test. HRNet poses.
data = dict(
    dataset='diving48',
    root=None,                  # set with --root or --cfg-options data.root=/path/to/Diving48
    pose_source=None,           # None: hrnet
    pose_checkpoint=None,       # None: the official HRNet-w32 file, found locally
    extract=dict(num_frames=16, short_side=256, grid_cell=16),
    dataset_options=dict(),
    train_split='train',
    test_split='test',
)
