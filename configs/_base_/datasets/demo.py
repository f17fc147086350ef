# The generated demo dataset (docs/demo.md): 10 classes, 240 train / 80 val clips, poses shipped.
# These settings are the ones `pipeline extract --dataset demo` uses by default; the training run
# finds its cache entry by computing the same entry key (stages/data/lookup.py).
data = dict(
    dataset='demo',
    root=None,                  # default: <cache>/datasets/demo-v4 (generated on first use)
    pose_source=None,           # None: the dataset's default ('dataset': the shipped joints)
    pose_checkpoint=None,
    extract=dict(num_frames=16, short_side=128, grid_cell=16),
    dataset_options=dict(),
    # True: with a --frames-codec jpeg entry the JPEG frames are decoded, cropped and flipped on
    # the GPU (nvjpeg), not by the loader workers; without a CUDA device: a notice, CPU decoding
    decode_on_device=False,
    train_split='train',
    test_split='val',
)
