# Toyota-Smarthome, cross-subject protocol (31 classes); the dataset's own 13-joint LCR-Net poses.
# Cross-view: dataset_options=dict(protocol='cv1') or 'cv2' (19 classes).
data = dict(
    dataset='toyota_smarthome',
    root=None,
    pose_source=None,           # None: 'dataset' (the shipped skeletons)
    pose_checkpoint=None,
    extract=dict(num_frames=16, short_side=256, grid_cell=16),
    dataset_options=dict(),
    train_split='train',
    test_split='test',
)
