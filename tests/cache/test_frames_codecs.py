"""A frames codec is one class, registered: a new one works through extraction, reading, verify and
the training loader without touching any of them."""
from typing import Any, ClassVar

import numpy as np
import pytest

from cache import CacheStore
from cache.digests import array_digest
from cache.frames_codecs import frames_codec_names, frames_codec, register_frames_codec
from cache.frames_codecs.base import FramesCodec
from pevl_testutils import make_video, write_custom_dataset


@register_frames_codec
class UpsideDownFrames(FramesCodec):
    """Stores the frames flipped vertically (a codec the rest of the code has never seen)."""

    name: ClassVar[str] = "test_upside_down"
    help: ClassVar[str] = "test only"

    def write(self, group: Any, frames: np.ndarray, settings: Any, config: dict) -> str:
        stored = np.ascontiguousarray(frames[:, ::-1])
        z = group.create_array("frames", shape=stored.shape, chunks=stored.shape, dtype=stored.dtype, config=config)
        z[...] = stored
        return array_digest(frames)

    def read(self, meta: Any) -> np.ndarray:
        from cache.chunks import read_array

        return np.ascontiguousarray(read_array(meta)[:, ::-1])

    def digest(self, frames: Any) -> str:
        return array_digest(np.asarray(frames))


def test_a_registered_codec_runs_through_extraction_verify_and_the_loader(tmp_path):
    from pipeline.engines.local import run_extract
    from stages.data.dataset import CacheClipDataset
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    make_video(root / "v0.mp4", frames=6, size=(64, 48))
    make_video(root / "v1.mp4", frames=6, size=(64, 48))
    write_custom_dataset(root, [("v0.mp4", 0, "train"), ("v1.mp4", 1, "val")], ["a", "b"])
    reps = {}
    for codec in ("none", "test_upside_down"):
        reps[codec] = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                                                 pose_options={"checkpoint": "none", "flip_test": False},
                                                 settings={"num_frames": 2, "short_side": 48, "frames_codec": codec}))
        assert reps[codec].complete
    raw, mine = (reps[c].entry for c in ("none", "test_upside_down"))
    assert raw.key != mine.key
    for row in raw.clips():
        np.testing.assert_array_equal(np.asarray(raw.read_clip(row["uid"]).frames),
                                      np.asarray(mine.read_clip(row["uid"]).frames))
    assert CacheStore(tmp_path / "cache").verify(mine).ok
    a, b = (CacheClipDataset(e, "val", mode="test", crop_size=48, num_pose_frames=2) for e in (raw, mine))
    np.testing.assert_array_equal(a[0]["frames"].numpy(), b[0]["frames"].numpy())


def test_an_unknown_codec_is_named_with_the_known_ones():
    assert "test_upside_down" in frames_codec_names()
    with pytest.raises(ValueError, match=r"unknown frames codec 'jepg'; did you mean 'jpeg'\? \(known: none"):
        frames_codec("jepg")
    from stages.extract.settings import ExtractSettings
    from stages.settings import SettingsError

    with pytest.raises(SettingsError, match="frames_codec: unknown frames codec 'zzz'"):
        ExtractSettings.from_dict({"frames_codec": "zzz"}, where="extract")
    assert ExtractSettings(frames_codec="none").as_dict().get("jpeg_quality") is None
    assert ExtractSettings(frames_codec="jpeg").as_dict()["jpeg_quality"] == 95
