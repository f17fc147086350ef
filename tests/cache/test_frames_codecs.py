"""A frames codec is one class, registered: a new one works through extraction, reading, verify and
the training loader without touching any of them."""
from typing import Any, ClassVar

import numpy as np
import pytest

from cache import CacheStore
from cache.digests import array_digest
from cache.frames_codecs import frames_codec_names, frames_codec, register_frames_codec
from cache.frames_codecs.base import FramesCodec
from pevl_testutils import make_video, tiny_hrnet_config, write_custom_dataset


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
                                                 pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False},
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


@pytest.mark.parametrize("name", frames_codec_names())
def test_as_read_gives_the_frames_a_reader_gets_back(name, tmp_path, rng):
    """What `pipeline predict` feeds the model: new frames as an entry of this codec would give them."""
    import zarr

    from cache.chunks import read_group_meta
    from stages.extract.settings import ExtractSettings

    frames = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    frames[:, 8:24] = 90  # a flat area: lossy codecs keep it close, not equal
    settings = ExtractSettings(frames_codec=name).to_dict()
    codec = frames_codec(name)
    g = zarr.open_group(tmp_path / "clip", mode="w", zarr_format=3)
    codec.write(g, frames, settings, {"write_empty_chunks": True})
    zarr.consolidate_metadata(tmp_path / "clip")
    _, metas = read_group_meta(tmp_path / "clip")
    np.testing.assert_array_equal(np.asarray(codec.as_read(frames, settings)), np.asarray(codec.read(metas["frames"])))


# -- yuv420 ---------------------------------------------------------------------------------------------
def _i420_round_trip(frames: np.ndarray) -> np.ndarray:
    """OpenCV's own RGB -> I420 -> RGB, outside our packing: what a yuv420 entry must give back."""
    import cv2

    return np.stack([cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420) for f in frames])


def test_yuv420_stores_opencvs_i420_one_row_pair_per_row(rng):
    from cache.frames_codecs.yuv420 import Yuv420Frames, pack_yuv420, unpack_yuv420

    frames = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    packed = pack_yuv420(frames)
    assert packed.shape == (3, 16, 3, 48) and packed.nbytes * 2 == frames.nbytes  # 1.5 bytes a pixel
    import cv2

    i420 = cv2.cvtColor(frames[1], cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y = i420[:32 * 48].reshape(32, 48)
    np.testing.assert_array_equal(packed[1, 5, 0], y[10])  # row pair 5: luma rows 10 and 11, then its chroma
    np.testing.assert_array_equal(packed[1, 5, 1], y[11])
    np.testing.assert_array_equal(packed[1, 5, 2, :24], i420[32 * 48:32 * 48 + 32 * 12].reshape(16, 24)[5])
    np.testing.assert_array_equal(packed[1, 5, 2, 24:], i420[32 * 48 + 32 * 12:].reshape(16, 24)[5])
    want = _i420_round_trip(frames)
    np.testing.assert_array_equal(unpack_yuv420(packed), want)
    lazy = Yuv420Frames(packed)
    assert lazy.shape == frames.shape
    np.testing.assert_array_equal(lazy[2], want[2])
    np.testing.assert_array_equal(lazy[[2, 0], 4:9], want[[2, 0], 4:9])
    # a band of rows starting and ending on even rows is the band of row pairs, an odd number of them too
    np.testing.assert_array_equal(unpack_yuv420(np.ascontiguousarray(packed[:, 3:8])), want[:, 6:16])


def test_yuv420_on_the_device_gives_opencvs_pixels(rng):
    """The training device converts with OpenCV's integer arithmetic: the same pixels as the CPU
    path's cv2.cvtColor, for any bytes (not only those an RGB frame packs to)."""
    import torch

    from cache.frames_codecs.yuv420 import unpack_yuv420
    from stages.data.device_frames import rows_chw

    for shape in ((2, 16, 3, 48), (1, 5, 3, 8)):
        packed = rng.integers(0, 256, shape, dtype=np.uint8)
        got = rows_chw(torch.from_numpy(packed))
        assert got.dtype == torch.uint8 and got.shape == (shape[0], 3, 2 * shape[1], shape[3])
        np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), unpack_yuv420(packed))
    rgb = torch.from_numpy(rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8))
    assert torch.equal(rows_chw(rgb), rgb.permute(0, 3, 1, 2))  # RGB rows pass as a view
    with pytest.raises(ValueError, match=r"neither RGB \(T, h, W, 3\) nor yuv420"):
        rows_chw(torch.zeros(2, 6, 4, 8, dtype=torch.uint8))


def test_yuv420_refuses_odd_sides_and_other_shapes(tmp_path, rng):
    import zarr

    from cache.chunks import read_group_meta
    from cache.frames_codecs.yuv420 import pack_yuv420
    from stages.extract.settings import ExtractSettings
    from stages.settings import SettingsError

    with pytest.raises(ValueError, match=r"clip7: yuv420 needs even frame sides, got 47x32"):
        pack_yuv420(rng.integers(0, 256, (1, 32, 47, 3), dtype=np.uint8), "clip7")
    with pytest.raises(SettingsError, match="frames codec 'yuv420' needs even frame sides.*grid cell, which is 15"):
        ExtractSettings.from_dict({"frames_codec": "yuv420", "grid_cell": 15}, where="extract")
    g = zarr.open_group(tmp_path / "clip", mode="w", zarr_format=3)
    g.create_array("frames", shape=(2, 8, 4, 16), chunks=(2, 8, 4, 16), dtype="uint8",
                   compressors=None)[...] = 0  # not (T, H/2, 3, W)
    zarr.consolidate_metadata(tmp_path / "clip")
    _, metas = read_group_meta(tmp_path / "clip")
    codec = frames_codec("yuv420")
    with pytest.raises(ValueError,
                       match=r"clip/frames: yuv420 frames must be stored as \(T, H/2, 3, W\).*\(2, 8, 4, 16\)"):
        codec.read(metas["frames"])
    with pytest.raises(ValueError, match=r"yuv420 frames must be stored as"):
        codec.frame_shape(metas["frames"])


def test_yuv420_reads_bands_of_even_rows(tmp_path, rng):
    """An item's band of rows is widened to even rows (the pairs that hold it) and read as one range
    per frame, converted on the CPU or named for the device."""
    import zarr

    from cache.chunks import read_group_meta
    from cache.entry import ClipData

    frames = rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    codec = frames_codec("yuv420")
    g = zarr.open_group(tmp_path / "clip", mode="w", zarr_format=3)
    codec.write(g, frames, {"grid_cell": 16}, {"write_empty_chunks": True})
    zarr.consolidate_metadata(tmp_path / "clip")
    _, metas = read_group_meta(tmp_path / "clip")
    meta = metas["frames"]
    assert codec.frame_shape(meta) == (4, 32, 48, 3)
    clip = ClipData(clip_id="c", uid="c", split="train", label=0, frames=None, frame_indices=np.arange(4),
                    keypoints=None, scores=None, grids=None, grid_cell=16, frames_meta=meta,
                    frame_shape=codec.frame_shape(meta))
    assert clip.frame_size == (32, 48)
    assert codec.row_band(7, 10) == (6, 12) and codec.row_band(6, 10) == (6, 10) and codec.row_band(0, 32) == (0, 32)
    want = _i420_round_trip(frames)
    got, pos, first = codec.read_rows(clip, [3, 1], 7, 10)
    assert first == 6 and list(pos) == [0, 1]
    np.testing.assert_array_equal(got, want[[3, 1], 6:18])
    reads = codec.row_reads(clip, [3, 1], 6, 12)
    assert reads.shape == (2, 6, 3, 48) and len(reads.offsets) == 2  # one range a frame
    np.testing.assert_array_equal(reads.read(), np.asarray(codec.read(meta).packed)[[3, 1], 3:9])
    with pytest.raises(ValueError, match="must start and end on even rows"):
        codec.row_reads(clip, [0], 7, 10)
    with pytest.raises(IndexError, match="frame 4 of 4"):
        codec.row_reads(clip, [1, 4], 6, 12)
    assert codec.digest(codec.read(meta)) == codec.write(zarr.open_group(tmp_path / "again", mode="w", zarr_format=3),
                                                         frames, {"grid_cell": 16}, {"write_empty_chunks": True})


def test_a_yuv420_entry_extracts_verifies_exports_and_is_checked(tmp_path):
    """Through stage one, verify (a damaged frames chunk found), the HDF5 export (as stored) and
    the loader, beside a raw entry of the same videos."""
    import h5py

    from cache.frames_codecs.yuv420 import LAYOUT
    from cache.store import export_hdf5
    from pipeline.engines.local import run_extract
    from stages.data.dataset import CacheClipDataset
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    make_video(root / "v0.mp4", frames=6, size=(64, 48))
    make_video(root / "v1.mp4", frames=6, size=(64, 48))
    write_custom_dataset(root, [("v0.mp4", 0, "train"), ("v1.mp4", 1, "val")], ["a", "b"])
    reps = {codec: run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                                              pose_options={"checkpoint": "none", "config": tiny_hrnet_config(), "flip_test": False},
                                              settings={"num_frames": 2, "short_side": 48, "frames_codec": codec}))
            for codec in ("none", "yuv420")}
    raw, yuv = (reps[c].entry for c in ("none", "yuv420"))
    assert reps["yuv420"].complete and raw.key != yuv.key
    row = yuv.clips()[0]
    frames = yuv.read_clip(row["uid"]).frames
    assert frames.shape == np.asarray(raw.read_clip(row["uid"]).frames).shape == (6, 48, 64, 3)  # K = 3
    np.testing.assert_array_equal(np.asarray(frames), _i420_round_trip(np.asarray(raw.read_clip(row["uid"]).frames)))
    store = CacheStore(tmp_path / "cache")
    assert store.verify(yuv).ok
    out = tmp_path / "yuv.h5"
    assert export_hdf5(yuv, out) == 2
    with h5py.File(out, "r") as f:
        ds = f["clips"][row["uid"]]["frames"]
        assert ds.shape == (6, 24, 3, 64) and ds.attrs["layout"] == LAYOUT
        np.testing.assert_array_equal(ds[...], frames.packed)
    a, b = (CacheClipDataset(e, "val", mode="test", crop_size=48, num_pose_frames=2) for e in (raw, yuv))
    assert a[0]["frames"].shape == b[0]["frames"].shape
    chunk = yuv.path / "clips" / row["uid"] / "frames" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    rep = store.verify(yuv)
    assert f"clips/{row['uid']}: frames: content does not match its digest" in rep.problems


def test_row_reads_continue_short_reads(tmp_path, monkeypatch):
    """A read that returns less than asked (network filesystems do) is continued, not taken short."""
    import os

    from cache.chunks import band_reads

    data = np.arange(4 * 6 * 5 * 3, dtype=np.uint8).reshape(4, 6, 5, 3)
    path = tmp_path / "chunk"
    path.write_bytes(data.tobytes())
    reads = band_reads(str(path), data.shape, [3, 0], 2, 3)
    real = os.preadv
    calls = []

    def short(fd, bufs, off):  # 7 bytes at a time
        calls.append(off)
        return real(fd, [bufs[0][:7]], off)

    monkeypatch.setattr(os, "preadv", short)
    np.testing.assert_array_equal(reads.read(), data[[3, 0], 2:5])
    # the short reads happened: two ranges (one per frame) of 3 rows x 5 x 3 = 45 bytes, 7 reads each
    assert len(calls) == 2 * -(-45 // 7)
