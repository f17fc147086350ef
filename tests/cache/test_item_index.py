"""The entry's item index: what an item reads besides its pixels, held in memory, equal to the clips."""
import json
import shutil

import numpy as np
import pytest
import zarr

from cache import CacheStore, layout
from cache.chunks import ChunkFormatError
from cache.entry import CacheEntry
from cache.item_index import ITEM_ARRAYS, ItemIndex, ItemIndexError
from cache.writer import EntryWriter
from test_store_format import make_entry as make_clips


def make_entry(root, codec: str = "none", n: int = 2) -> CacheEntry:
    """A finished toy entry: its clips and the index the writer that finishes it writes."""
    entry = make_clips(root, codec, n=n)
    assert EntryWriter(entry).finalize_if_complete()
    return entry


def _same_clip(a, b) -> None:
    """``a`` (from the index) is ``b`` (read per clip) in everything an item reads."""
    assert (a.clip_id, a.uid, a.split, a.label, a.grid_cell, a.frames_per_segment) == \
           (b.clip_id, b.uid, b.split, b.label, b.grid_cell, b.frames_per_segment)
    for name in ("frame_indices", "keypoints", "scores"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.scale == b.scale and a.num_frames == b.num_frames and a.frame_size == b.frame_size
    m, n = a.frames_meta, b.frames_meta
    assert (m.chunk_file, m.shape, m.dtype, m.compressor) == (n.chunk_file, n.shape, n.dtype, n.compressor)


def test_the_index_holds_every_clip_as_read_per_clip(tmp_path):
    entry = make_entry(tmp_path, n=5)
    rows = entry.clips()
    index = ItemIndex.load(entry, rows[::-1][:3])  # a subset in another order: a split
    assert index is not None and len(index.scale) == 3
    for r in rows[::-1][:3]:
        _same_clip(index.clip(r["uid"]), entry.read_clip(r["uid"], arrays=("frame_indices", "keypoints", "scores")))
    assert rows[0]["uid"] not in index and rows[-1]["uid"] in index
    # its rows read the same bytes as the per-clip clip's
    from cache.frames_codecs import frames_codec

    codec = frames_codec("none")
    a = codec.row_reads(index.clip("c4"), [1, 0], 16, 8).read()
    b = codec.row_reads(entry.read_clip("c4"), [1, 0], 16, 8).read()
    assert np.array_equal(a, b) and np.array_equal(a, np.asarray(entry.read_clip("c4").frames)[[1, 0], 16:24])


@pytest.mark.parametrize("codec", ["lz4", "jpeg"])
def test_frames_that_are_not_raw_chunks_are_read_per_clip(tmp_path, codec):
    entry = make_entry(tmp_path, codec)
    assert ItemIndex.load(entry, entry.clips()) is None
    attrs = zarr.open_group(entry.path / layout.INDEX_DIR, mode="r").attrs["items"]
    assert "frames_shape" not in attrs["digests"] and "frame_indices" in attrs["digests"]


def test_an_index_written_before_the_item_arrays_is_read_per_clip(tmp_path):
    entry = make_entry(tmp_path)
    meta = entry.path / layout.INDEX_DIR / "zarr.json"
    m = json.loads(meta.read_text())
    del m["attributes"]["items"]
    meta.write_text(json.dumps(m))
    assert ItemIndex.load(entry, entry.clips()) is None
    assert CacheStore(tmp_path).verify(entry).ok  # an older index is not damaged


@pytest.mark.parametrize("name", ITEM_ARRAYS)
def test_a_damaged_item_array_is_refused_naming_it_and_repair_writes_it_again(tmp_path, name):
    entry = make_entry(tmp_path, n=3)
    g = zarr.open_group(entry.path / layout.INDEX_DIR, mode="r+")
    a = g[name][...]
    a.reshape(-1)[-1] += 1  # one value off: the item would read another frame, joint or scale
    g[name][...] = a
    with pytest.raises(ItemIndexError, match=f"index/{name}: content does not match the digest"):
        ItemIndex.load(entry, entry.clips())
    rep = CacheStore(tmp_path).verify(entry)
    assert not rep.ok and any(name in p for p in rep.index_problems)
    assert CacheStore(tmp_path).repair(entry).reindexed
    assert CacheStore(tmp_path).verify(entry).ok and ItemIndex.load(entry, entry.clips()) is not None


def test_a_clip_the_index_does_not_hold_is_refused(tmp_path):
    entry = make_entry(tmp_path, n=2)
    with pytest.raises(ItemIndexError, match="no item arrays for clips \\['c9'\\]"):
        ItemIndex.load(entry, entry.clips() + [{"uid": "c9", "clip_id": "c9", "split": "train", "label": 0}])


def test_a_frames_chunk_of_another_size_than_the_index_says_is_refused(tmp_path):
    entry = make_entry(tmp_path, n=2)
    index = ItemIndex.load(entry, entry.clips())
    clip = index.clip("c1")
    (chunk,) = [p for p in (entry.path / "clips" / "c1" / "frames" / "c").rglob("*") if p.is_file()]
    shutil.copy(chunk, tmp_path / "keep")
    with open(chunk, "ab") as f:
        f.write(b"\0" * 3)
    from cache.frames_codecs import frames_codec

    with pytest.raises(ChunkFormatError, match="c1/frames/c/0/0/0/0: .* bytes, expected"):
        frames_codec("none").row_reads(clip, [0], 0, 4).read()


def test_an_unfinished_entry_has_no_item_index(tmp_path):
    entry = make_clips(tmp_path, n=2)
    assert ItemIndex.load(CacheEntry(entry.path), entry.clips()) is None


def _rewrite(entry, name: str, change) -> None:
    """Rewrite the index's item array ``name`` through ``change`` and record matching digests: an
    index that is whole but describes other clips (as one written before the clips changed would)."""
    from cache.item_index import item_attrs

    g = zarr.open_group(entry.path / layout.INDEX_DIR, mode="r+")
    a = change(g[name][...])
    g[name][...] = a
    arrays = {n: g[n][...] for n in ITEM_ARRAYS}
    g.attrs["items"] = item_attrs(arrays, list(g.attrs["uids"]))


def test_verify_compares_the_item_arrays_with_the_clips(tmp_path):
    entry = make_entry(tmp_path, n=3)
    assert CacheStore(tmp_path).verify(entry).ok

    def shift(kp):
        kp[-1] += 1.0  # the last clip's last frame: another version of that clip
        return kp

    _rewrite(entry, "keypoints", shift)
    assert ItemIndex.load(entry, entry.clips()) is not None  # whole, by its own digests
    rep = CacheStore(tmp_path).verify(entry)
    assert rep.index_problems == ["index: clip c2's keypoints differ from the clip's (the index is stale)"]
    assert CacheStore(tmp_path).repair(entry).reindexed and CacheStore(tmp_path).verify(entry).ok


def test_a_quick_verify_blames_a_damaged_clip_not_the_index_and_repair_moves_the_clip(tmp_path):
    """Flipped bytes in a clip's keypoints: a quick verify (no clip hashed) sees the clip differ
    from the index and names the clip, whose digest fails, not the index; a quick repair moves the
    clip aside (it removed the index and kept the damaged clip, and extraction then stopped on it)."""
    entry = make_entry(tmp_path, n=3)
    chunk = entry.path / "clips" / "c1" / "keypoints" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[-3] ^= 0xFF
    chunk.write_bytes(bytes(data))
    rep = CacheStore(tmp_path).verify(entry, deep=False)
    assert rep.index_problems == [] and list(rep.clips) == ["c1"]
    assert rep.problems == ["clips/c1: keypoints: content does not match its digest (the index holds the clip as "
                            "it was written)"]
    out = CacheStore(tmp_path).repair(entry, deep=False)
    assert list(out.quarantined) == ["c1"] and out.missing == 1 and "c1" not in entry.done_uids()


def test_a_damaged_clip_list_or_a_missing_array_is_refused_naming_it(tmp_path):
    entry = make_entry(tmp_path, n=3)
    meta = entry.path / layout.INDEX_DIR / "zarr.json"
    m = json.loads(meta.read_text())
    m["attributes"]["uids"] = m["attributes"]["uids"][::-1]  # rows paired with the wrong clips
    meta.write_text(json.dumps(m))
    with pytest.raises(ItemIndexError, match="index/zarr.json: its clip list does not match"):
        ItemIndex.load(entry, entry.clips())
    entry = make_entry(tmp_path / "b", n=2)
    shutil.rmtree(entry.path / layout.INDEX_DIR / "scale")
    m = json.loads((entry.path / layout.INDEX_DIR / "zarr.json").read_text())
    m.get("consolidated_metadata", {}) and m["consolidated_metadata"]["metadata"].pop("scale", None)
    (entry.path / layout.INDEX_DIR / "zarr.json").write_text(json.dumps(m))
    with pytest.raises(ItemIndexError, match="index/scale: missing"):
        ItemIndex.load(entry, entry.clips())


def test_poses_past_the_bound_are_read_per_clip(tmp_path, monkeypatch, caplog):
    import cache.item_index as item_index

    entry = make_entry(tmp_path, n=2)
    monkeypatch.setattr(item_index, "MAX_POSE_BYTES", 10)
    with caplog.at_level("INFO", logger="cache.item_index"):
        assert ItemIndex.load(entry, entry.clips()) is None
    assert "exceed the item index's bound" in caplog.text


def test_the_held_arrays_are_read_only_and_know_when_the_index_changed(tmp_path):
    entry = make_entry(tmp_path, n=2)
    index = ItemIndex.load(entry, entry.clips())
    clip = index.clip("c0")
    with pytest.raises(ValueError):
        clip.keypoints[0, 0, 0] = 1.0  # shared by every later item
    assert index.current()
    EntryWriter(entry).reopen("test")  # what repair and extract do before a clip changes
    assert not index.current()
    assert EntryWriter(entry).finalize_if_complete()
    assert not index.current()  # written anew: another file
    assert ItemIndex.load(entry, entry.clips()).current()


def test_repair_removes_the_index_before_it_moves_a_clip_aside(tmp_path, monkeypatch):
    entry = make_entry(tmp_path, n=2)
    (chunk,) = [p for p in (entry.path / "clips" / "c1" / "keypoints" / "c").rglob("*") if p.is_file()]
    data = bytearray(chunk.read_bytes())
    data[-2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    seen = []
    original = EntryWriter.quarantine

    def quarantine(self, uid, why):
        seen.append((entry.path / layout.INDEX_DIR).exists())
        return original(self, uid, why)

    monkeypatch.setattr(EntryWriter, "quarantine", quarantine)
    assert CacheStore(tmp_path).repair(entry).reopened
    assert seen == [False]


def test_an_index_this_user_cannot_read_falls_back_to_the_clips(tmp_path, monkeypatch, caplog):
    """Another user's index with restrictive modes stopped training with a PermissionError, though
    every clip could be read: items then read each clip, with a warning."""
    import logging

    entry = make_entry(tmp_path)
    real = zarr.open_group

    def denied(path, *a, **k):
        if str(path).endswith("/index"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(zarr, "open_group", denied)
    with caplog.at_level(logging.WARNING, logger="cache.item_index"):
        assert ItemIndex.load(entry, entry.clips()) is None
    assert f"entry {entry.key}: its index cannot be read" in caplog.text and "Permission denied" in caplog.text


def test_an_index_whose_metadata_is_cut_short_is_named(tmp_path):
    """A truncated index/zarr.json failed training as a bare "JSONDecodeError: Unterminated string",
    naming no file; verify said "unreadable" with neither the folder nor what to do."""
    entry = make_entry(tmp_path)
    meta = entry.path / "index" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:len(meta.read_bytes()) // 2])
    with pytest.raises(ItemIndexError, match=rf"{entry.path}/index: its metadata is unreadable \(JSONDecodeError"
                                             rf".*pipeline cache repair {entry.path}"):
        ItemIndex.load(entry, entry.clips())
    (problem,) = CacheStore(tmp_path).verify(entry).problems
    assert f"{entry.path}/index" in problem and "`pipeline cache repair` writes it again" in problem
    CacheStore(tmp_path).repair(entry)
    assert ItemIndex.load(entry, entry.clips()) is not None and CacheStore(tmp_path).verify(entry).ok


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64])
def test_a_ragged_array_streamed_chunk_by_chunk_gives_the_rows_and_the_digest_of_the_whole(chunk_rows, monkeypatch):
    """Clips of 0 to 5 rows across chunk boundaries, taken in another order, some twice, some not."""
    import cache.item_index as item_index
    from cache.digests import array_digest

    monkeypatch.setattr(item_index, "_STREAM_BYTES", 1)  # one chunk a read: every boundary is crossed
    rng = np.random.default_rng(chunk_rows)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 6, 40))]).astype(np.int64)
    values = rng.normal(size=(int(offsets[-1]), 3, 2)).astype(np.float32)
    array = zarr.create_array(store={}, shape=values.shape, chunks=(chunk_rows, 3, 2), dtype=values.dtype)
    array[...] = values
    for take in (np.arange(40), rng.permutation(40)[:25], np.asarray([5, 3, 5, 39, 0]), np.zeros(0, np.int64)):
        got, got_offsets, digest = item_index._take_ragged(array, offsets, take)
        want = [values[offsets[t]:offsets[t + 1]] for t in take]
        assert np.array_equal(got, np.concatenate(want) if want else values[:0])
        assert np.array_equal(got_offsets, np.cumsum([0] + [len(w) for w in want]))
        assert digest == array_digest(values)


def _large_index_entry(root, n: int, frames: int, chunk_rows: int) -> CacheEntry:
    """A finished entry whose ``index/`` holds ``n`` clips of ``frames`` pose frames, their poses in
    chunks of ``chunk_rows`` frames, written as the writer writes it (no clip files: the load reads none)."""
    from cache.chunks import ArrayMeta, chunk_file
    from cache.entry import ClipData
    from cache.item_index import item_arrays, item_attrs
    from cache.writer import create_entry

    settings = {"num_frames": 4, "short_side": 64, "grid_cell": 16, "frames_codec": "none", "min_frames": 2}
    attrs = {"format": layout.FORMAT_VERSION, "key": "large", "settings_hash": "large", "dataset": "toy",
             "settings": settings, "classes": ["a", "b"], "coarse_type": "toy", "skeleton": "coco17",
             "created": {"time": "now"}}
    plan = [{"clip_id": f"c{i}", "uid": f"c{i}", "split": "train", "label": i % 2} for i in range(n)]
    entry = create_entry(root / "entries" / "toy" / "large", attrs, plan, {"key": "large"})
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(0, 90, (n * frames, 17, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, (n * frames, 17)).astype(np.float32)
    offsets = np.arange(n + 1, dtype=np.int64) * frames
    clips = []
    for c in plan:
        path = f"{entry.path}/clips/{c['uid']}/frames"
        meta = ArrayMeta(path, (4, 64, 96, 3), np.dtype("uint8"), "", {}, chunk_file(path, 4))
        clips.append(ClipData(clip_id=c["clip_id"], uid=c["uid"], split="train", label=c["label"], frames=None,
                              frame_indices=np.arange(4, dtype=np.int32), keypoints=None, scores=None, grids=None,
                              grid_cell=16, attrs={"scale": [1.0, 1.0]}, frames_meta=meta))
    g = zarr.open_group(entry.path / layout.INDEX_DIR, mode="w", zarr_format=3)
    g.create_array("keypoints", data=keypoints, chunks=(chunk_rows, 17, 2))
    g.create_array("scores", data=scores, chunks=(chunk_rows, 17))
    g.create_array("offsets", data=offsets)
    items = item_arrays(clips)
    for name, a in items.items():
        g.create_array(name, data=a)
    items.update(keypoints=keypoints, scores=scores, offsets=offsets)
    g.attrs.update({"uids": [c["uid"] for c in plan], "items": item_attrs(items, [c["uid"] for c in plan])})
    return entry


def test_a_split_is_loaded_without_holding_the_whole_entrys_poses(tmp_path, monkeypatch):
    """The load reads and checks the poses a chunk at a time: its peak is about what it keeps (a
    quarter of the clips here), not the whole entry's poses beside the split's copy (547 MB peak for
    223 MB kept at 20k clips when it read every array whole)."""
    import tracemalloc

    import cache.item_index as item_index

    monkeypatch.setattr(item_index, "_STREAM_BYTES", 1)
    entry = _large_index_entry(tmp_path, n=400, frames=200, chunk_rows=2048)  # poses: 16 MB
    g = zarr.open_group(entry.path / layout.INDEX_DIR, mode="r")
    whole = g["keypoints"].nbytes + g["scores"].nbytes
    rows = entry.clips(done_only=False)[::-4]
    tracemalloc.start()
    try:
        index = ItemIndex.load(entry, rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kept = index.keypoints.nbytes + index.scores.nbytes
    assert kept == whole // 4 and peak < kept + whole // 4, (peak, kept, whole)
    keypoints = g["keypoints"][...]
    for r in rows[:5] + rows[-5:]:
        i = int(r["uid"][1:])
        assert np.array_equal(index.clip(r["uid"]).keypoints, keypoints[i * 200:(i + 1) * 200])
    # one value off in a middle chunk: still found, the array named
    keypoints[40000, 3, 1] += 1
    zarr.open_group(entry.path / layout.INDEX_DIR, mode="r+")["keypoints"][40000] = keypoints[40000]
    with pytest.raises(ItemIndexError, match="index/keypoints: content does not match the digest"):
        ItemIndex.load(entry, rows)


def test_offsets_that_do_not_split_the_poses_are_refused(tmp_path):
    """Offsets whose digest matches (written so) but that go back or past the end: the rows they name
    would be another clip's."""
    entry = make_entry(tmp_path, n=3)

    def back(offsets):
        offsets[1], offsets[2] = offsets[2], offsets[1]
        return offsets

    _rewrite(entry, "offsets", back)
    with pytest.raises(ItemIndexError, match="item arrays of other lengths than its 3 clips"):
        ItemIndex.load(entry, entry.clips())


def test_verify_reads_the_poses_once_and_names_a_clip_the_index_lists_but_clips_lack(tmp_path, monkeypatch):
    """verify checks the index's clip list and offsets from its metadata and the offsets array, then
    loads the item arrays streamed: the poses are never read whole beside them."""
    entry = make_entry(tmp_path, n=3)

    def whole(self):
        raise AssertionError("the index's poses read whole")

    monkeypatch.setattr(CacheEntry, "read_index", whole)
    assert CacheStore(tmp_path).verify(entry).ok
    shutil.rmtree(entry.path / "clips" / "c1")
    rep = CacheStore(tmp_path).verify(entry)
    assert rep.index_problems == ["index: clip list differs from clips/"]
