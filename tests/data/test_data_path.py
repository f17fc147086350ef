"""The fast read path gives the items the plain path gave; JPEG frames on the CPU and on a device."""
import dataclasses
import logging
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pevl_stage2_testutils import small_demo, small_demo_jpeg, small_demo_k3, small_demo_yuv420  # noqa: E402,F401

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import simplejpeg  # noqa: E402
import torch  # noqa: E402
import zarr  # noqa: E402

from stages.data import CacheClipDataset, item_rng  # noqa: E402
from stages.data.device_frames import FrameRows, collate_items, frames_from_jpeg, frames_from_rows  # noqa: E402
from stages.data.device_poses import joints_and_grids  # noqa: E402
from stages.data.sampling import sample_pose_frames, sample_video_frames  # noqa: E402
from stages.geometry import crop_offsets  # noqa: E402

KW = dict(crop_size=112, num_pose_frames=48, seed=11)


def views(**over):
    from stages.data.settings import DataSettings
    from stages.data.views import ViewSampler

    return ViewSampler.from_settings(DataSettings.from_dict(over), 112, 16)


#: the views of the code before issue 20 (a crop on the cell lattice, no resize): the reference
#: below slices the stored grids, so it checks the grids rebuilt from the joints against stage one's
PLAIN = dict(views=views(train_crop="fixed_size", test_views="three_crop"))


def reference_item(ds: CacheClipDataset, index: int, epoch: int, decode=None) -> tuple[dict, list]:
    """The item as the format-1 reader built it: every array through the zarr API, then numpy
    crops and flips and a permute, the mask grids sliced from the stored ones (the code this reader
    replaced, kept here as the reference; plain crops only); and its views (top, left, flip)."""
    row = ds.rows[index]
    g = zarr.open_group(ds.entry.path / "clips" / row["uid"], mode="r")
    frames = g["frames"][...]
    if decode is not None:
        frames = decode(frames)
    grids, fi, kp_all, sc_all = (g[k][...] for k in ("grids", "frame_indices", "keypoints", "scores"))
    sx, sy = g.attrs["scale"]
    rng = item_rng(ds.seed, epoch, index) if ds.mode == "train" else None
    vsel = sample_video_frames(len(fi), ds.num_video_frames, rng)
    frames, grids, vf = frames[vsel], grids[vsel], fi[vsel].astype(np.int64)
    pose_idx, vpi = sample_pose_frames(len(kp_all), ds.num_pose_frames, vf, rng)
    kp = (kp_all * np.array([sx, sy], np.float32))[pose_idx].astype(np.float32)
    joints = np.concatenate([kp, sc_all[pose_idx].astype(np.float32)[..., None]], -1)
    h, w = frames.shape[1:3]
    s, cell = ds.crop_size, ds.cell
    if rng is not None:
        top, left = crop_offsets(h, w, s, cell, "random", rng)
        views = [(top, left, bool(rng.random() < ds.flip_prob))]
    else:
        views = [(*crop_offsets(h, w, s, cell, where), False) for where in ds.test_crops]
    out = {"frames": [], "joints": [], "mask_grid": []}
    for top, left, flip in views:
        f = frames[:, top:top + s, left:left + s]
        gr = grids[..., top // cell:(top + s) // cell, left // cell:(left + s) // cell]
        j = joints.copy()
        j[..., 0] -= left
        j[..., 1] -= top
        if flip:
            perm = ds.flip_index
            f, gr, j = f[:, :, ::-1], gr[:, perm][..., ::-1], j[..., perm, :].copy()
            j[..., 0] = np.nextafter((s - j[..., 0]).astype(np.float32), np.float32(-np.inf))
        j[..., :2] /= s
        out["frames"].append(torch.from_numpy(np.ascontiguousarray(f)).permute(0, 3, 1, 2).contiguous())
        out["joints"].append(torch.from_numpy(np.ascontiguousarray(j, dtype=np.float32)))
        out["mask_grid"].append(torch.from_numpy(np.ascontiguousarray(gr, dtype=np.float16)))
    out = {k: (v[0] if rng is not None else torch.stack(v)) for k, v in out.items()}
    out.update(video_pose_index=torch.from_numpy(vpi.astype(np.int64)), label=torch.tensor(int(row["label"])),
               index=torch.tensor(index),
               pose_time=torch.from_numpy(pose_idx.astype(np.float32) / np.float32(len(kp_all))))
    return out, views


def assert_same_items(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def decode_files(files) -> np.ndarray:
    return np.stack([simplejpeg.decode_jpeg(bytes(b), colorspace="RGB") for b in files])


def test_default_codec_items_are_the_items_the_zarr_reader_gave(small_demo):
    _, entry_dir, _ = small_demo
    for kw in (KW, dict(KW, num_pose_frames=16, num_video_frames=8)):
        ds = CacheClipDataset(entry_dir, "train", mode="train", **kw, **PLAIN)
        frames = ds.entry.read_clip(ds.rows[0]["uid"]).frames
        assert not frames.flags.writeable and not frames.flags.owndata  # a view of the mapped chunk
        flips = set()
        for epoch in range(3):
            for i in range(0, len(ds), 4):
                want, views = reference_item(ds, i, epoch)
                assert_same_items(ds[(i, epoch)], want)
                flips.add(views[0][2])
        assert flips == {False, True}
    test = CacheClipDataset(entry_dir, "val", mode="test", **KW, **PLAIN)
    for i in range(len(test)):
        assert_same_items(test[i], reference_item(test, i, 0)[0])


@pytest.mark.parametrize("on_device", [False, True])
def test_items_from_the_entrys_item_index_equal_items_read_per_clip(small_demo, small_demo_k3, small_demo_jpeg,
                                                                   small_demo_yuv420, on_device):
    """A finished raw entry's items take their clip's metadata and small arrays from the item index
    (cache/item_index.py, held by the dataset) and open no clip file but the frames' chunk: the
    same items as reading each clip (K = 1 and 3, yuv420, training and test views). JPEG entries read
    clips."""
    from cache.entry import CacheEntry

    for entry_dir in (small_demo[1], small_demo_k3[1], small_demo_yuv420[1]):
        for mode, split in (("train", "train"), ("test", "val")):
            ds = CacheClipDataset(entry_dir, split, mode=mode, views_on_device=on_device, **KW)
            per_clip = CacheClipDataset(entry_dir, split, mode=mode, views_on_device=on_device, **KW)
            per_clip.item_index = None
            assert ds.item_index is not None
            opened = []
            ds.entry.read_clip = lambda *a, **k: opened.append(a)  # never called on the index path
            for epoch in (0, 1):
                for i in range(0, len(ds), 3):
                    a, b = ds[(i, epoch)], per_clip[(i, epoch)]
                    assert sorted(a) == sorted(b)
                    for k in a:
                        if isinstance(a[k], FrameRows):
                            assert a[k].reads == b[k].reads and np.array_equal(a[k].reads.read(), b[k].reads.read())
                        else:
                            assert torch.equal(a[k], b[k]), k
            assert not opened
    assert CacheClipDataset(CacheEntry(small_demo_jpeg[1]), "train", **KW).item_index is None


def test_an_entry_changed_under_a_run_is_read_per_clip_from_then_on(small_demo, tmp_path, caplog):
    """The item arrays a dataset holds describe the clips of the index it loaded: once the entry is
    reopened (a clip moved aside or missing) or finished anew, items read each clip, with a warning;
    an entry with missing clips (--allow-partial) never uses the index."""
    import shutil

    from cache.writer import EntryWriter

    entry_dir = tmp_path / "entry"
    shutil.copytree(small_demo[1], entry_dir)
    ds = CacheClipDataset(entry_dir, "train", **KW)
    ref = CacheClipDataset(entry_dir, "train", **KW)
    ref.item_index = None
    assert ds.item_index is not None
    EntryWriter(ds.entry).reopen("test: a clip is to be extracted again")
    with caplog.at_level(logging.WARNING):
        assert_same_items(ds[(0, 1)], ref[(0, 1)])
    assert ds.item_index is None and "its index changed while this run read it" in caplog.text
    assert EntryWriter(ds.entry).finalize_if_complete()
    shutil.rmtree(entry_dir / "clips" / ds.rows[-1]["uid"])  # gone from a finished entry, index still there
    partial = CacheClipDataset(entry_dir, "train", allow_partial=True, **KW)
    assert partial.item_index is None and len(partial) == len(ds) - 1


def test_jpeg_items_match_the_raw_items_within_the_codec_loss(small_demo, small_demo_jpeg):
    raw = CacheClipDataset(small_demo[1], "train", **KW, **PLAIN)
    jpg = CacheClipDataset(small_demo_jpeg[1], "train", **KW, **PLAIN)
    assert jpg.entry.frames_codec == "jpeg" and raw.entry.frames_codec == "none"
    for i in range(0, len(jpg), 5):
        a, b = raw[(i, 1)], jpg[(i, 1)]
        assert_same_items(b, reference_item(jpg, i, 1, decode=decode_files)[0])  # decoded outside our code
        assert all(torch.equal(a[k], b[k]) for k in a if k != "frames")  # same crops, joints, grids
        err = (a["frames"].double() - b["frames"].double()).pow(2).mean()
        assert 10 * torch.log10(255.0 ** 2 / err) > 30.0  # PSNR in dB


def test_yuv420_items_are_the_items_of_its_frames_as_opencv_converts_them(small_demo, small_demo_yuv420):
    """A yuv420 entry's items are the reference items of its stored frames converted by OpenCV
    outside our code, bit for bit (CPU views); against the raw entry's, the same crops, joints and
    grids, the pixels within the chroma's loss."""
    import cv2

    def opencv(packed):  # (T, H/2, 3, W) -> (T, H, W, 3), each frame through cv2's I420 layout
        t, h2, _, w = packed.shape
        i420 = [np.concatenate([f[:, :2].reshape(-1), f[:, 2, :w // 2].reshape(-1), f[:, 2, w // 2:].reshape(-1)])
                for f in packed]
        return np.stack([cv2.cvtColor(p.reshape(3 * h2, w), cv2.COLOR_YUV2RGB_I420) for p in i420])

    raw = CacheClipDataset(small_demo[1], "train", **KW, **PLAIN)
    yuv = CacheClipDataset(small_demo_yuv420[1], "train", **KW, **PLAIN)
    assert yuv.entry.frames_codec == "yuv420" and yuv.item_index is not None
    stored = zarr.open_group(yuv.entry.path / "clips" / yuv.rows[0]["uid"], mode="r")["frames"]
    assert stored.shape[2] == 3 and stored.nbytes * 2 == np.prod(raw.entry.read_clip(raw.rows[0]["uid"]).frames.shape)
    for i in range(0, len(yuv), 5):
        a, b = raw[(i, 1)], yuv[(i, 1)]
        assert_same_items(b, reference_item(yuv, i, 1, decode=opencv)[0])
        assert all(torch.equal(a[k], b[k]) for k in a if k != "frames")
        err = (a["frames"].double() - b["frames"].double()).pow(2).mean()
        assert 10 * torch.log10(255.0 ** 2 / err) > 30.0  # PSNR in dB
    test = CacheClipDataset(small_demo_yuv420[1], "val", mode="test", **KW, **PLAIN)
    assert_same_items(test[1], reference_item(test, 1, 0, decode=opencv)[0])


def assert_device_poses_equal_the_loaders(batch, want):
    """The joints and grids the device builds from a device-path batch are the loader's, bit for bit."""
    joints, grids = joints_and_grids(batch["pose_joints"], batch["frames_crop"], batch["joint_flip"],
                                     batch["grid_cell"], batch["video_pose_index"])
    assert "joints" not in batch and "mask_grid" not in batch  # the worker neither builds nor ships them
    assert torch.equal(joints, want["joints"])
    assert torch.equal(grids, want["mask_grid"].float())


def cpu_decoder(files, device):
    return [torch.from_numpy(simplejpeg.decode_jpeg(f.numpy().tobytes(), colorspace="RGB")).permute(2, 0, 1)
            .to(device) for f in files]


@pytest.mark.parametrize("mode,split,over", [
    ("train", "train", dict(train_crop="fixed_size")), ("train", "train", dict(train_crop="random_resized")),
    ("train", "train", dict(train_crop="multi_scale")), ("test", "val", dict(test_views="three_crop")),
    ("test", "val", dict(test_views="resize_three_crop"))])
def test_frames_decoded_on_the_device_equal_the_loaders(small_demo_jpeg, mode, split, over):
    """The device path cuts, resizes and mirrors each view as the loader does: plain crops to the
    pixel, resized boxes within a level (OpenCV's fixed-point bilinear against torch's)."""
    _, entry_dir, _ = small_demo_jpeg
    kw = dict(KW, views=views(**over))
    cpu = CacheClipDataset(entry_dir, split, mode=mode, **kw)
    dev = CacheClipDataset(entry_dir, split, mode=mode, decode_on_device=True, **kw)
    idx = [(i, 2) for i in range(min(5, len(cpu)))]
    batch = collate_items([dev[i] for i in idx])
    assert "frames" not in batch and len(batch["frames_jpeg"]) == len(idx)
    want = collate_items([cpu[i] for i in idx])
    got = frames_from_jpeg(batch["frames_jpeg"], batch["frames_jpeg_lengths"], batch["frames_crop"],
                           torch.device("cpu"), decode=cpu_decoder)
    assert got.shape == want["frames"].shape
    crops = batch["frames_crop"].reshape(-1, 6)
    resized = bool((crops[:, 2:4] != crops[:, 4:5]).any())
    assert resized == (over.get("train_crop", "fixed_size") != "fixed_size" if mode == "train"
                       else over["test_views"] != "three_crop")
    diff = (got.int() - want["frames"].int()).abs()
    assert diff.max() <= (1 if resized else 0), diff.max()
    assert_device_poses_equal_the_loaders(batch, want)
    for k in ("video_pose_index", "label"):
        assert torch.equal(batch[k], want[k]), k
    # the preprocessor does it on its own device, then normalises as for every batch
    from stages.train.runner_model import ClipDataPreprocessor

    pre = ClipDataPreprocessor(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with pytest.raises(RuntimeError, match="needs a CUDA device"):  # nvjpeg only; CPU runs fall back earlier
        pre(dict(batch), training=mode == "train")


@pytest.mark.parametrize("mode,split,over", [
    ("train", "train", dict(train_crop="fixed_size")), ("train", "train", dict(train_crop="random_resized")),
    ("train", "train", dict(train_crop="multi_scale", flip_prob=1.0)), ("test", "val", dict(test_views="three_crop")),
    ("test", "val", dict(test_views="resize_three_crop"))])
@pytest.mark.parametrize("entry", ["small_demo", "small_demo_yuv420"])
def test_views_on_the_device_equal_the_loaders(entry, mode, split, over, request):
    """With data.views_on_device an item ships the rows its views span, as stored (yuv420: the row
    pairs holding them, converted on the device), and the device cuts, resizes and mirrors them as
    the loader does: plain crops to the pixel, resized boxes within a level; everything else in the
    item is the loader's."""
    from stages.train.runner_model import ClipDataPreprocessor

    _, entry_dir, _ = request.getfixturevalue(entry)
    kw = dict(KW, views=views(**over))
    cpu = CacheClipDataset(entry_dir, split, mode=mode, **kw)
    dev = CacheClipDataset(entry_dir, split, mode=mode, views_on_device=True, **kw)
    idx = [(i, 3) for i in range(min(5, len(cpu)))]
    items = [dev[i] for i in idx]
    batch = collate_items(items)
    assert "frames" not in batch and len(batch["frames_rows"]) == len(idx)
    want = collate_items([cpu[i] for i in idx])
    crops = batch["frames_crop"].reshape(len(idx), -1, 6)
    h, w = cpu.entry.read_clip(cpu.rows[0]["uid"], arrays=("frames",)).frames.shape[1:3]
    for rows, top, item_crops in zip(batch["frames_rows"], batch["frames_rows_top"].tolist(), crops.tolist()):
        # raw frames: the worker names the band (the stored frames' rows from the highest view's
        # top to the lowest view's bottom); whoever needs the pixels reads them
        assert isinstance(rows, FrameRows) and len(pickle.dumps(rows)) < 2000
        first, bottom = min(c[0] for c in item_crops), max(c[0] + c[2] for c in item_crops)
        if cpu.codec.name == "yuv420":  # the pairs of rows holding the band: (T, rows / 2, 3, W)
            assert rows.shape[0] == 16 and rows.shape[2:] == (3, w)
            assert top == first - first % 2 and top + 2 * rows.shape[1] == bottom + bottom % 2
        else:
            assert rows.shape[0] == 16 and rows.shape[2:] == (w, 3)
            assert first == top and bottom == top + rows.shape[1]
    got = frames_from_rows(batch["frames_rows"], batch["frames_rows_top"], batch["frames_crop"], torch.device("cpu"))
    assert got.shape == want["frames"].shape
    resized = bool((crops[..., 2:4] != crops[..., 4:5]).any())
    assert resized == (over.get("train_crop", "fixed_size") != "fixed_size" if mode == "train"
                       else over["test_views"] != "three_crop")
    diff = (got.int() - want["frames"].int()).abs()
    assert diff.max() <= (1 if resized else 0), diff.max()
    assert (diff > 0).float().mean() < 0.5  # a rounding here and there, not another image
    assert_device_poses_equal_the_loaders(batch, want)
    for k in ("video_pose_index", "pose_time", "label", "index"):
        assert torch.equal(batch[k], want[k]), k
    if mode == "train" and over.get("flip_prob") == 1.0:
        assert bool(crops[..., 5].all())  # every view mirrored: the device mirrors as the loader does
    # the preprocessor does the same on its device, then normalises as for every batch
    pre = ClipDataPreprocessor(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = pre(dict(batch), training=mode == "train")["batch"]
    ref = pre(dict(want), training=mode == "train")["batch"]
    assert out.keys() == ref.keys() and out["frames"].shape == ref["frames"].shape
    assert (out["frames"] - ref["frames"]).abs().max() <= (1 / 255 / 0.25 + 1e-5 if resized else 0)
    for k in ("joints", "mask_grid"):
        assert torch.equal(out[k], ref[k]), k


def test_frame_rows_are_read_once_into_the_pinned_batch(small_demo, monkeypatch):
    """The DataLoader's pinning of a whole collated batch turns its FrameRowsBatch into the bands,
    read by a few threads at once straight into the buffers it pins (page-locked memory needs CUDA:
    plain buffers stand in for it here); the rows equal the codec's own read, and a moved, resized
    or short chunk file fails naming the file."""
    import threading

    from torch.utils.data._utils.pin_memory import pin_memory

    from cache.chunks import ChunkFormatError
    from stages.data.device_frames import FrameRowsBatch

    _, entry_dir, _ = small_demo
    dev = CacheClipDataset(entry_dir, "train", views_on_device=True, **dict(KW, views=views()))
    batch = collate_items([dev[(i, 4)] for i in range(3)])
    assert isinstance(batch["frames_rows"], FrameRowsBatch)
    allocated, threads, real_empty = [], set(), torch.empty

    def empty(*shape, **kw):  # torch.empty(..., pin_memory=True) without a CUDA device
        if not kw.pop("pin_memory", False):
            return real_empty(*shape, **kw)
        threads.add(threading.current_thread().name)
        allocated.append(real_empty(*shape, **kw))
        return allocated[-1]

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)  # the batch's other tensors
    pinned = pin_memory(batch)  # what the pinning thread does to each batch
    monkeypatch.undo()
    rows_pinned = pinned["frames_rows"]
    assert len(allocated) == 3 and {id(p) for p in rows_pinned} == {id(a) for a in allocated}
    assert all(name.startswith("frame-rows") for name in threads)  # read by the batch's reader threads
    for i, (rows, got) in enumerate(zip(batch["frames_rows"], rows_pinned)):
        clip = dev.entry.read_clip(dev.rows[i]["uid"])
        vsel = dev.stored_frames(clip, item_rng(dev.seed, 4, i))
        top = int(batch["frames_rows_top"][i])
        assert top == int(batch["frames_crop"][i, 0])  # one view: the band starts at its top
        want = np.asarray(clip.frames)[vsel, top:top + rows.shape[1]]
        assert torch.equal(got, torch.from_numpy(np.ascontiguousarray(want)))
        assert torch.equal(rows.tensor(), got)
    cpu = torch.device("cpu")
    assert torch.equal(frames_from_rows(rows_pinned, batch["frames_rows_top"], batch["frames_crop"], cpu),
                       frames_from_rows(batch["frames_rows"], batch["frames_rows_top"], batch["frames_crop"], cpu))
    reads = batch["frames_rows"][0].reads
    past_the_end = dataclasses.replace(reads, offsets=(reads.file_size - reads.nbytes // 2,),
                                       shape=(1,) + reads.shape[1:])
    with pytest.raises(ChunkFormatError, match=f"{reads.path}: short read"):
        FrameRows(past_the_end).tensor()
    with pytest.raises(ChunkFormatError, match="chunk file missing"):
        FrameRows(dataclasses.replace(reads, path=reads.path + ".moved")).tensor()
    with pytest.raises(ChunkFormatError, match="the file is damaged"):  # a truncated or replaced chunk
        FrameRows(dataclasses.replace(reads, file_size=reads.file_size + 1)).tensor()


def test_views_on_the_device_rows_of_a_lossy_codec(small_demo_jpeg):
    """A JPEG entry's frames decoded by the loader (decode_on_device off) travel as rows alike,
    as the pixels themselves (no file range holds them)."""
    _, entry_dir, _ = small_demo_jpeg
    kw = dict(KW, views=views(train_crop="random_resized"))
    cpu = CacheClipDataset(entry_dir, "train", **kw)
    dev = CacheClipDataset(entry_dir, "train", views_on_device=True, **kw)
    batch = collate_items([dev[(i, 1)] for i in range(3)])
    assert all(isinstance(r, torch.Tensor) and r.dtype == torch.uint8 for r in batch["frames_rows"])
    want = collate_items([cpu[(i, 1)] for i in range(3)])
    got = frames_from_rows(batch["frames_rows"], batch["frames_rows_top"], batch["frames_crop"], torch.device("cpu"))
    assert (got.int() - want["frames"].int()).abs().max() <= 1
    assert_device_poses_equal_the_loaders(batch, want)


def test_pixel_work_goes_to_a_cuda_device_only(small_demo):
    """data.views_on_device (on by default) applies on a CUDA device; on a CPU run the workers cut."""
    from mmengine.config import Config

    from stages.data.settings import DataSettings
    from stages.train.runner import build_datasets

    assert DataSettings.from_dict({}).views_on_device is True
    entry = CacheClipDataset(small_demo[1], "train", crop_size=112).entry
    for device, over, want in (("cpu", {}, False), ("cuda", {}, True), ("cuda", dict(views_on_device=False), False)):
        cfg = Config(dict(train=dict(seed=0), model=dict(num_pose_frames=16, num_video_frames=16),
                          data=dict(small_demo[2], **over)))
        train, test = build_datasets(cfg, entry, 112, allow_partial=False, device=device)
        assert train.views_on_device is want and test.views_on_device is want
        assert ("frames_rows" in train[0]) is want and ("frames" in train[0]) is not want


def test_decode_on_device_falls_back_to_the_cpu_with_one_notice(small_demo, small_demo_jpeg, caplog):
    from mmengine.config import Config

    from stages.train.runner import build_datasets

    cfg = Config(dict(train=dict(seed=0), model=dict(num_pose_frames=16, num_video_frames=16),
                      data=dict(small_demo_jpeg[2], decode_on_device=True)))
    entry = CacheClipDataset(small_demo_jpeg[1], "train", crop_size=112).entry
    with caplog.at_level(logging.WARNING, logger="stages.train.runner"):
        train, test = build_datasets(cfg, entry, 112, allow_partial=False, device="cpu")
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "no CUDA device" in notes[0] and "CPU" in notes[0]
    assert not train.decode_on_device and not test.decode_on_device
    assert train[0]["frames"].shape == (16, 3, 112, 112)
    caplog.clear()
    raw = CacheClipDataset(small_demo[1], "train", crop_size=112).entry
    with caplog.at_level(logging.WARNING, logger="stages.train.runner"):
        train, _ = build_datasets(cfg, raw, 112, allow_partial=False, device="cuda")
    assert not train.decode_on_device and "not decoded on a device" in caplog.records[0].getMessage()
    with pytest.raises(ValueError, match="--frames-codec jpeg"):
        CacheClipDataset(small_demo[1], "train", crop_size=112, decode_on_device=True)


def numpy_pose_frames(num_frames, t, vf, rng):
    """sample_pose_frames as format 1's reader computed it (numpy per video frame): the reference."""
    from stages.geometry import segment_middle_indices, segment_random_indices

    vf = np.asarray(vf, dtype=np.int64)
    idx = segment_middle_indices(num_frames, t) if rng is None else segment_random_indices(num_frames, t, rng)
    idx = np.clip(idx.astype(np.int64), 0, num_frames - 1)
    vf = np.clip(vf, 0, num_frames - 1)
    taken = np.zeros(t, dtype=bool)
    slot_of = np.empty(len(vf), dtype=np.int64)
    for k in np.argsort(vf, kind="stable"):
        d = np.abs(idx - vf[k]).astype(np.float64)
        d[taken] = np.inf
        j = int(np.argmin(d))
        taken[j] = True
        slot_of[k] = j
        idx[j] = vf[k]
    order = np.lexsort((np.arange(t), idx))
    new_pos = np.empty(t, dtype=np.int64)
    new_pos[order] = np.arange(t)
    return idx[order], new_pos[slot_of]


def test_pose_frame_sampling_equals_the_numpy_original():
    gen = np.random.default_rng(0)
    for case in range(1500):
        n, t = int(gen.integers(1, 200)), int(gen.integers(1, 64))
        tv = int(gen.integers(max(1, t - 3) if case % 2 else 1, t + 1))  # half the cases nearly fill every slot
        vf = gen.integers(-2, n + 3, tv)  # unsorted, repeated, out of range: all clipped alike
        seed = None if case % 3 == 0 else case
        a = sample_pose_frames(n, t, vf, None if seed is None else np.random.default_rng(seed))
        b = numpy_pose_frames(n, t, vf, None if seed is None else np.random.default_rng(seed))
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and np.array_equal(x, y), (n, t, vf, seed)
