"""Store format 2: the chunk-file reader equals zarr, JPEG frames, old formats refused, damage named."""
import hashlib
import json
import os
import mmap
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cache import CacheStore, layout
from cache.chunks import ChunkDigestError, ChunkFormatError
from cache.frames_codecs.jpeg import JpegFrames
from cache.entry import CacheEntry, EntryFormatError
from cache.writer import EntryWriter, create_entry

T_V, H, W, F, V = 4, 64, 96, 10, 17


def realistic_frames(seed: int, t: int = T_V, h: int = H, w: int = W) -> np.ndarray:
    """Smooth texture, an edge and mild noise: compresses like footage, not like a test pattern."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.normal(0, 40, (h // 8, w // 8, 3)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC) + 120
    base[h // 3:, w // 2:] += 50
    return np.stack([np.clip(np.roll(base, 2 * i, 1) + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
                     for i in range(t)])


def clip_arrays(seed: int, boxes: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    a = {"frames": realistic_frames(seed),
         "frame_indices": np.array([1, 3, 6, 8], np.int32),
         "keypoints": rng.uniform(0, 90, (F, V, 2)).astype(np.float32),
         "scores": rng.uniform(0, 1, (F, V)).astype(np.float32),
         "grids": np.zeros((T_V, V, H // 16, W // 16), np.float16)}
    a["grids"][0, 3, 1, 2] = 0.5
    if boxes:
        a["person_boxes"] = rng.uniform(0, 90, (F, 4)).astype(np.float32)
    return a


def make_entry(root: Path, codec: str = "none", quality: int = 95, n: int = 2, fmt: int = layout.FORMAT_VERSION,
               boxes: bool = False) -> CacheEntry:
    settings = {"num_frames": T_V, "short_side": H, "grid_cell": 16, "frames_codec": codec, "min_frames": 2,
                **({"jpeg_quality": quality} if codec == "jpeg" else {})}
    key = f"{codec}{quality}{fmt}"
    attrs = {"format": fmt, "key": key, "settings_hash": key, "dataset": "toy", "settings": settings,
             "classes": ["a", "b"], "coarse_type": "toy", "skeleton": "coco17", "created": {"time": "now"}}
    plan = [{"clip_id": f"c{i}", "uid": f"c{i}", "split": "train", "label": i % 2} for i in range(n)]
    d = root / "entries" / "toy" / key
    if fmt != layout.FORMAT_VERSION:  # what an old writer left: only the root attributes matter
        g = zarr.open_group(d, mode="w", zarr_format=3)
        g.attrs.update(attrs)
        (d / "plan.json").write_text(json.dumps({"clips": plan}))
        return d
    entry = create_entry(d, attrs, plan, {"key": key})
    w = EntryWriter(entry)
    for i, c in enumerate(plan):
        assert w.claim(c["uid"])
        w.commit(c["uid"], clip_arrays(i, boxes), {"clip_id": c["clip_id"], "split": "train", "label": c["label"],
                                                   "num_frames": F, "scale": [1.0, 1.0], "orig_size": [H, W]})
    return entry


def is_memory_mapped(a: np.ndarray) -> bool:
    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a.obj if isinstance(a, memoryview) else a, mmap.mmap)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_chunk_reader_gives_what_zarr_reads(tmp_path, codec):
    entry = make_entry(tmp_path, codec, boxes=True)
    for i, uid in enumerate(sorted(entry.done_uids())):
        c = entry.read_clip(uid)
        g = zarr.open_group(entry.path / "clips" / uid, mode="r")
        for name in layout.CLIP_ARRAYS + ("person_boxes",):
            want = g[name][...]
            got = np.asarray(getattr(c, name))
            assert got.dtype == want.dtype and got.shape == want.shape, name
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, clip_arrays(i, True)[name])
        assert is_memory_mapped(c.frames) == (codec == "none")  # raw frames are mapped, not copied
        assert c.attrs["num_frames"] == F and c.label == i % 2
    assert CacheStore(tmp_path).verify(entry).ok


def test_optional_arrays_stay_optional(tmp_path):
    entry = make_entry(tmp_path)
    c = entry.read_clip("c0")
    assert c.person_boxes is None and c.frames.shape == (T_V, H, W, 3)
    only = entry.read_clip("c0", arrays=("keypoints",))
    assert only.frames is None and only.grids is None and only.keypoints.shape == (F, V, 2)


@pytest.mark.filterwarnings("ignore:The data type .VariableLengthBytes")  # plain zarr says vlen bytes lack a v3 spec
def test_jpeg_frames_round_trip_and_read_with_plain_zarr_and_any_decoder(tmp_path):
    from PIL import Image
    import io

    entry = make_entry(tmp_path, "jpeg", quality=95)
    raw = clip_arrays(0)["frames"]
    c = entry.read_clip("c0")
    assert isinstance(c.frames, JpegFrames) and c.frames.shape == raw.shape
    decoded = np.asarray(c.frames)
    assert decoded.dtype == np.uint8 and psnr(decoded, raw) > 35.0
    np.testing.assert_array_equal(c.frames[[2, 0]], decoded[[2, 0]])  # decodes only what it is asked
    np.testing.assert_array_equal(c.frames[1, 5:9], decoded[1, 5:9])
    # outside our code: plain zarr gives the JPEG files, PIL (or any decoder) decodes them
    g = zarr.open_group(entry.path / "clips" / "c0", mode="r")
    files = g["frames"][...]
    assert files.shape == (T_V,) and files[0][:2] == b"\xff\xd8"
    assert g["frames"].attrs["jpeg"] == {"frame_shape": [H, W, 3], "quality": 95, "color": "RGB",
                                         "subsampling": "4:2:0", "file_bytes": [len(b) for b in files],
                                         "file_digests": [hashlib.sha256(b).hexdigest()[:32] for b in files]}
    pil = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in files])
    assert np.abs(pil.astype(int) - decoded).max() <= 1
    # smaller than raw, and the quality setting is honoured (and keyed)
    lo = make_entry(tmp_path / "q50", "jpeg", quality=50)
    size = sum(len(b) for b in files)
    size_lo = sum(len(b) for b in zarr.open_group(lo.path / "clips" / "c0", mode="r")["frames"][...])
    assert size < raw.nbytes / 4 and size_lo < size
    assert psnr(np.asarray(lo.read_clip("c0").frames), raw) < psnr(decoded, raw)
    assert CacheStore(tmp_path).verify(entry).ok


def test_verify_catches_damaged_jpeg_frames_and_missing_chunks(tmp_path):
    entry = make_entry(tmp_path, "jpeg")
    store = CacheStore(tmp_path)
    chunk = entry.path / "clips" / "c0" / "frames" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte inside the last JPEG
    chunk.write_bytes(bytes(data))
    rep = store.verify(entry)
    assert rep.problems == [f"clips/c0: frames[{T_V - 1}]: content does not match the digest its writer recorded "
                            "for it (file_digests)", "clips/c0: frames: content does not match its digest"]
    kp = entry.path / "clips" / "c1" / "keypoints" / "c" / "0" / "0" / "0"
    kp.unlink()
    with pytest.raises(ChunkFormatError, match="keypoints/c/0/0/0: chunk file missing"):
        entry.read_clip("c1")
    assert any("c1" in p and "chunk file missing" in p for p in store.verify(entry, deep=False).problems)


def test_reader_errors_name_the_file_and_what_is_gone(tmp_path):
    """A damaged compressed chunk, damaged metadata and a clip (or entry) removed while in use are
    each named by file, not by the codec's own words ('Zstd decompression error')."""
    entry = make_entry(tmp_path)
    grids = entry.path / "clips" / "c0" / "grids" / "c" / "0" / "0" / "0" / "0"
    grids.write_bytes(grids.read_bytes()[:7])
    with pytest.raises(ChunkFormatError, match=r"c0/grids/c/0/0/0/0: cannot be decompressed \(zstd: .*the file is damaged"):
        entry.read_clip("c0")
    meta = entry.path / "clips" / "c1" / "zarr.json"
    meta.write_text(meta.read_text()[:50])
    with pytest.raises(ChunkFormatError, match=r"c1/zarr.json: not valid JSON"):
        entry.read_clip("c1")
    shutil.rmtree(entry.path / "clips" / "c1")
    with pytest.raises(ChunkFormatError, match=rf"c1/zarr.json: metadata file missing: {entry.path / 'clips' / 'c1'} "
                                                r"is gone \(removed or moved while it was in use\)"):
        entry.read_clip("c1")


def _jpeg_chunk(entry: CacheEntry, uid: str = "c0") -> tuple[Path, list[bytes]]:
    """The clip's frames chunk file and its JPEG files as plain zarr reads them."""
    g = zarr.open_group(entry.path / "clips" / uid, mode="r")
    return entry.path / "clips" / uid / "frames" / "c" / "0", [bytes(b) for b in g["frames"][...]]


def _offset(files: list[bytes], i: int) -> int:
    """Where file ``i`` starts in a vlen-bytes chunk: after the count and each earlier length + file."""
    return 4 + sum(4 + len(b) for b in files[:i]) + 4


@pytest.mark.filterwarnings("ignore:The data type .VariableLengthBytes")
def test_jpeg_frames_read_only_the_files_used_each_checked(tmp_path, monkeypatch):
    """An item of a K-candidate JPEG entry uses a third of the stored frames: it reads just those
    bytes (one read per run of neighbours) and compares each file with the writer's digest of it."""
    entry = make_entry(tmp_path, "jpeg")
    chunk, files = _jpeg_chunk(entry)
    reads = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: reads.append((off, len(bufs[0]))) or real(fd, bufs, off))
    c = entry.read_clip("c0")
    assert c.frames.checks_each_file and reads == []  # the read itself takes none of the frames
    got = c.frames.files([3, 0, 1])
    assert [bytes(b) for b in got] == [files[3], files[0], files[1]]
    assert sorted(reads) == [(_offset(files, 0) - 4, 8 + len(files[0]) + len(files[1])),
                             (_offset(files, 3) - 4, 4 + len(files[3]))]
    monkeypatch.setattr(os, "preadv", real)
    np.testing.assert_array_equal(c.frames[[2]], entry.read_clip("c0", check="all").frames.decode([2]))

    data = bytearray(chunk.read_bytes())
    data[_offset(files, 3) + len(files[3]) // 2] ^= 0xFF  # a flipped byte inside frame 3's JPEG
    chunk.write_bytes(bytes(data))
    c = entry.read_clip("c0")  # frames 0-2 still read: the damage is named when frame 3 is read
    assert [bytes(b) for b in c.frames.files([0, 2])] == [files[0], files[2]]
    with pytest.raises(ChunkDigestError, match=r"frames/c/0 \(frame 3\): content does not match.*pipeline cache "
                                               rf"repair {entry.path}"):
        c.frames.decode([1, 3])
    with pytest.raises(ChunkDigestError, match="frame 3"):
        np.asarray(c.frames)
    assert CacheStore(tmp_path).verify(entry).problems == [
        "clips/c0: frames[3]: content does not match the digest its writer recorded for it (file_digests)",
        "clips/c0: frames: content does not match its digest"]
    with pytest.raises(ChunkDigestError, match="frames/c/0: content does not match"):
        entry.read_clip("c0", check="all")  # all frames, their digest as a whole

    data[_offset(files, 1) - 4] ^= 0x01  # frame 1's stored length
    chunk.write_bytes(bytes(data))
    with pytest.raises(ChunkFormatError, match=rf"element 1 is not the {len(files[1])} bytes its writer recorded"):
        entry.read_clip("c0").frames.files([1])
    chunk.write_bytes(bytes(data[:-5]))
    with pytest.raises(ChunkFormatError, match=rf"frames/c/0: {len(data) - 5} bytes, expected {len(data)}"):
        entry.read_clip("c0").frames.files([0])


@pytest.mark.filterwarnings("ignore:The data type .VariableLengthBytes")
def test_verify_sees_a_damaged_count_or_per_file_digest_of_jpeg_frames(tmp_path):
    """What an item's reads never look at is still verify's: the chunk's element count, and the
    per-file digests themselves (a damaged attribute would stop training with nothing to repair)."""
    entry = make_entry(tmp_path, "jpeg")
    chunk, files = _jpeg_chunk(entry)
    c = entry.read_clip("c0")
    np.testing.assert_array_equal(c.frames[-1], c.frames[len(files) - 1])  # numpy's negative indices
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0x01  # the u32 count
    chunk.write_bytes(bytes(data))
    (problem,) = CacheStore(tmp_path).verify(entry).problems
    assert problem.startswith("clips/c0: unreadable (ChunkFormatError") and "not a vlen-bytes chunk" in problem
    _edit_jpeg_attr(entry, "c1", lambda a: a["file_digests"].__setitem__(1, "0" * 32))
    assert "clips/c1: frames[1]: content does not match the digest its writer recorded for it (file_digests)" in \
        CacheStore(tmp_path).verify(entry).problems


def _edit_jpeg_attr(entry: CacheEntry, uid: str, edit) -> None:
    """Apply ``edit`` to the frames' ``jpeg`` attribute in the clip's metadata (the array's own and the
    group's consolidated copy, which the reader uses)."""
    clip = entry.path / "clips" / uid
    for f, get in ((clip / "frames" / "zarr.json", lambda m: m),
                   (clip / "zarr.json", lambda m: m["consolidated_metadata"]["metadata"]["frames"])):
        meta = json.loads(f.read_text())
        edit(get(meta)["attributes"]["jpeg"])
        f.write_text(json.dumps(meta))


@pytest.mark.filterwarnings("ignore:The data type .VariableLengthBytes")
def test_jpeg_frames_written_before_the_per_frame_digests_read_whole_and_checked_whole(tmp_path):
    entry = make_entry(tmp_path, "jpeg")
    chunk, files = _jpeg_chunk(entry)
    _edit_jpeg_attr(entry, "c0", lambda a: (a.pop("file_bytes"), a.pop("file_digests")))
    c = entry.read_clip("c0")
    assert not c.frames.checks_each_file and [bytes(b) for b in c.frames.files([2, 1])] == [files[2], files[1]]
    assert CacheStore(tmp_path).verify(entry).ok
    data = bytearray(chunk.read_bytes())
    data[_offset(files, 3) + 10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ChunkDigestError, match="frames/c/0: content does not match"):
        entry.read_clip("c0")  # the digest of all the frames, on every read, as before
    _edit_jpeg_attr(entry, "c1", lambda a: a["file_bytes"].pop())
    with pytest.raises(ChunkFormatError, match=r"c1/frames/zarr.json: attribute 'jpeg' has no 4 file lengths"):
        entry.read_clip("c1")


def test_all_zero_arrays_are_written_not_left_to_fill_values(tmp_path):
    entry = make_entry(tmp_path)
    assert (entry.path / "clips" / "c1" / "grids" / "c" / "0" / "0" / "0" / "0").is_file()  # all zeros


def test_old_format_entry_is_refused_and_reported_not_misread(tmp_path):
    current = make_entry(tmp_path)
    old = make_entry(tmp_path, fmt=1)
    with pytest.raises(EntryFormatError, match=r"store format 1.*re-extract.*pipeline cache gc"):
        CacheEntry(old)
    store = CacheStore(tmp_path)
    assert [e.key for e in store.entries()] == [current.key]
    assert store.old_format_entries() == [(old, 1)]
    with pytest.raises(EntryFormatError, match="pipeline cache gc"):
        store.open(old.name)
    acts = store.gc_plan()
    assert [a.path for a in acts] == [old] and "re-extract" in acts[0].why

    from pipeline.cli import app

    run = CliRunner().invoke
    ls = run(app, ["cache", "ls", "--cache-root", str(tmp_path), "--json"])
    rows = {r["key"]: r for r in json.loads(ls.stdout)}
    assert rows[old.name]["status"] == "old format 1" and rows[current.key]["status"] == "complete"
    ls = run(app, ["cache", "ls", "--cache-root", str(tmp_path)])
    assert ls.exit_code == 0 and "pipeline cache gc" in " ".join(ls.output.split())
    ver = run(app, ["cache", "verify", "--cache-root", str(tmp_path)])
    assert ver.exit_code == 1 and old.name in ver.output and "re-extract" in ver.output
    one = run(app, ["cache", "verify", old.name, "--cache-root", str(tmp_path)])
    assert one.exit_code == 1 and "store format 1" in " ".join(one.output.split())
    gc = run(app, ["cache", "gc", "--cache-root", str(tmp_path)])
    assert gc.exit_code == 0 and not old.exists() and current.path.exists()


def test_an_entry_of_a_newer_format_is_a_colleagues_and_never_removed(tmp_path, caplog):
    """Two versions of the tool on one cache: the older one's gc removed the newer one's complete
    entries as 'store format N+1, unreadable: re-extract it' (999 MiB in the audit), and every
    format bump would have let each lab member who had not upgraded wipe the others' extractions."""
    current = make_entry(tmp_path)
    newer = make_entry(tmp_path, fmt=layout.FORMAT_VERSION + 1)
    with pytest.raises(EntryFormatError, match=r"written by newer code.*update pevl-pipeline.*gc` of this code leaves it"):
        CacheEntry(newer)
    store = CacheStore(tmp_path)
    assert store.old_format_entries() == [] and store.newer_format_entries() == [(newer, layout.FORMAT_VERSION + 1)]
    assert store.gc_plan(damaged=True, keep_last=1) == [] and "written by newer code" in caplog.text

    from pipeline.cli import app

    run = CliRunner().invoke
    ls = run(app, ["cache", "ls", "--cache-root", str(tmp_path), "--json"])
    rows = {r["key"]: r for r in json.loads(ls.stdout)}
    assert rows[newer.name]["status"] == f"newer format {layout.FORMAT_VERSION + 1}"
    ls = run(app, ["cache", "ls", "--cache-root", str(tmp_path)])
    assert ls.exit_code == 0 and "update pevl-pipeline" in " ".join(ls.output.split())
    ver = run(app, ["cache", "verify", "--cache-root", str(tmp_path)])
    assert ver.exit_code == 0 and "newer store format" in ver.output, ver.output
    gc = run(app, ["cache", "gc", "--damaged", "--cache-root", str(tmp_path)])
    assert gc.exit_code == 0 and newer.exists() and (newer / "plan.json").is_file() and current.path.exists()


def test_hdf5_export_refuses_damaged_raw_frames(tmp_path):
    """Raw frames are not hashed per read (an item maps only its crop), but an export copies them
    whole: it compares their digest and refuses damage rather than copying it."""
    from cache.chunks import ChunkDigestError
    from cache.store import export_hdf5

    entry = make_entry(tmp_path)
    chunk = entry.path / "clips" / "c1" / "frames" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[7] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ChunkDigestError, match="c1/frames/c/0/0/0/0: content does not match"):
        export_hdf5(entry, tmp_path / "e.h5")
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "e.h5.partial").exists()


def test_hdf5_export_refuses_a_filesystem_without_room_before_writing(tmp_path, monkeypatch):
    """HDF5 on a full disk fails in its flush with a raw library message (or a segfault): the
    export checks the room first, and names the need, the free space and the mount."""
    import shutil
    from collections import namedtuple

    from cache.fsutil import DiskFullError
    from cache.store import export_hdf5

    entry = make_entry(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 6, 10 ** 6 - 1000, 1000))
    with pytest.raises(DiskFullError, match=rf"exporting entry {entry.key} needs about [\d.]+ MiB and the filesystem "
                                            rf"holding {tmp_path} \(mounted at .*\) has 0.0 MiB free"):
        export_hdf5(entry, tmp_path / "e.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entries"]


def test_hdf5_export_keeps_jpeg_files_and_optional_arrays(tmp_path):
    import h5py

    from cache.store import export_hdf5

    entry = make_entry(tmp_path, "jpeg", boxes=True)
    out = tmp_path / "e.h5"
    assert export_hdf5(entry, out) == 2
    with h5py.File(out, "r") as f:
        for uid in ("c0", "c1"):
            c = entry.read_clip(uid)
            g = f["clips"][uid]
            assert [bytes(x) for x in g["frames"][...]] == [bytes(b) for b in c.frames.encoded]
            assert json.loads(g["frames"].attrs["jpeg"]) == c.frames.info
            np.testing.assert_array_equal(g["person_boxes"][...], c.person_boxes)


def test_ls_takes_a_finished_entrys_size_from_its_manifest(tmp_path):
    """A finished entry's clips do not change: its size is recorded at completion and `cache ls`
    reads it there, where it walked every file of every entry (31 inodes a clip: ~6 s for 20,000
    clips from a warm local disk). Unfinished entries, and those finished before the size was
    recorded, are counted now."""
    from cache.fsutil import dir_size
    from pipeline.cli import app

    entry = make_entry(tmp_path)
    assert EntryWriter(entry).finalize_if_complete()
    manifest = json.loads((entry.path / layout.MANIFEST).read_text())
    recorded = manifest["bytes_at_completion"]
    assert manifest["status"] == "complete" and 0 < recorded < dir_size(entry.path)  # all but the manifest (and runs)

    def ls_row() -> dict:
        res = CliRunner().invoke(app, ["cache", "ls", "--cache-root", str(tmp_path), "--json"])
        assert res.exit_code == 0, res.output
        (row,) = json.loads(res.stdout)
        return row

    assert (ls_row()["bytes"], ls_row()["bytes_as_of"]) == (dir_size(entry.path), "completion")
    # what comes and goes after completion is counted now: a quarantined file, another run's record
    (entry.path / layout.QUARANTINE_DIR).mkdir()
    (entry.path / layout.QUARANTINE_DIR / "x").write_bytes(b"\0" * 5000)
    assert ls_row()["bytes"] == dir_size(entry.path)
    manifest["bytes_at_completion"] = 123_456_789  # the lasting part is the record, not a walk
    (entry.path / layout.MANIFEST).write_text(json.dumps(manifest))
    transient = dir_size(entry.path) - recorded
    assert (ls_row()["bytes"], ls_row()["bytes_as_of"]) == (123_456_789 + transient, "completion")
    del manifest["bytes_at_completion"]  # an entry finished before sizes were recorded
    (entry.path / layout.MANIFEST).write_text(json.dumps(manifest))
    assert (ls_row()["bytes"], ls_row()["bytes_as_of"]) == (dir_size(entry.path), "now")
    manifest["bytes_at_completion"] = 123_456_789
    (entry.path / layout.MANIFEST).write_text(json.dumps(manifest))
    shutil.rmtree(entry.path / "clips" / "c1")  # no longer finished: counted
    row = ls_row()
    assert row["status"] == "incomplete" and (row["bytes"], row["bytes_as_of"]) == (dir_size(entry.path), "now")
    EntryWriter(entry).reopen("a clip went missing")  # the record goes with the entry's completion
    assert "bytes_at_completion" not in json.loads((entry.path / layout.MANIFEST).read_text())


def test_a_writer_that_saw_the_entry_unfinished_does_not_outlive_the_finishing_writers_manifest(tmp_path):
    """B finds a clip missing; A commits it and finishes the entry (index, manifest "complete");
    then B writes its "incomplete" manifest. B must see the index and set the manifest right."""
    from dataclasses import replace

    entry = make_entry(tmp_path)
    a, b = EntryWriter(CacheEntry(entry.path)), EntryWriter(CacheEntry(entry.path))
    real_status, real_write = b.entry.status, b.write_manifest
    b.entry.status = lambda: replace(real_status(), missing=["c1"])  # what B saw before A's last commit
    order = []

    def write_manifest(status, **kw):
        if not order:
            order.append("A finishes")
            assert a.finalize_if_complete()
        order.append(f"B writes {status}")
        return real_write(status, **kw)

    b.write_manifest = write_manifest
    assert b.finalize_if_complete()
    assert order == ["A finishes", "B writes incomplete", "B writes complete"]
    assert json.loads((entry.path / layout.MANIFEST).read_text())["status"] == "complete"
