# What every real dataset config shares: HRNet-style stage-one settings of the paper (16 frames
# at segment middles, short side 256, 16-pixel grid for ViT-B/16), the dataset under --root.
data = dict(
    dataset=None,
    root=None,                  # set with --root or --cfg-options data.root=/path/to/the/dataset
    pose_source=None,           # None: the dataset's default (hrnet, or its shipped skeletons)
    pose_checkpoint=None,       # None: the official HRNet-w32 file, found locally
    extract=dict(num_frames=16, short_side=256, grid_cell=16),
    dataset_options=dict(),
    # True: with a --frames-codec jpeg entry the JPEG frames are decoded, cropped and flipped on
    # the GPU (nvjpeg), not by the loader workers; without a CUDA device: a notice, CPU decoding
    decode_on_device=False,
    train_split='train',
    test_split='test',
)
