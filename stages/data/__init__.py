"""Stage two's data side: a dataset over one cache entry, and how to find that entry.

Nothing here decodes a video or runs a pose model: clips are read through :mod:`cache` only.
"""
from stages.data.dataset import TEST_CROPS, CacheClipDataset, item_rng  # noqa: F401
from stages.data.sampling import sample_pose_frames, sample_video_frames  # noqa: F401
