"""`cache verify` reads each clip's metadata once (each read is a round trip on a network
filesystem), and reads the clip as the training reader does."""
import builtins
import io
import os

import numpy as np
import pytest

from cache import CacheStore, layout
from test_item_index import make_entry


def _count_metadata_opens(monkeypatch, entry) -> dict:
    """Opens of each clip's ``clips/<uid>/zarr.json``, by uid, through any of Python's opens."""
    clips_dir = os.path.join(os.fspath(entry.path), layout.CLIPS_DIR)
    opens: dict = {}

    def counted(real):
        def open_(path, *a, **k):
            p = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
            if isinstance(p, str) and os.path.dirname(os.path.dirname(p)) == clips_dir \
                    and os.path.basename(p) == layout.ROOT_META:
                uid = os.path.basename(os.path.dirname(p))
                opens[uid] = opens.get(uid, 0) + 1
            return real(path, *a, **k)
        return open_

    monkeypatch.setattr(os, "open", counted(os.open))
    monkeypatch.setattr(io, "open", counted(io.open))
    monkeypatch.setattr(builtins, "open", counted(builtins.open))
    return opens


@pytest.mark.parametrize("deep", [True, False])
def test_verify_reads_each_clips_metadata_once(tmp_path, monkeypatch, deep):
    entry = make_entry(tmp_path, n=3)  # finished: the index is compared with every clip too
    assert (entry.path / layout.INDEX_DIR).is_dir()
    opens = _count_metadata_opens(monkeypatch, entry)
    rep = CacheStore(tmp_path).verify(entry, deep=deep)
    assert rep.ok and rep.checked == 3
    assert opens == {"c0": 1, "c1": 1, "c2": 1}


@pytest.mark.parametrize("codec", ["none", "jpeg"])
def test_verify_reads_a_clip_as_read_clip_does(tmp_path, codec):
    """Verify's one read of a clip (its metadata passed along) gives what ``read_clip`` gives."""
    from cache.store import _read_clip_once
    from test_store_format import make_entry as make_clips

    entry = make_clips(tmp_path, codec, n=1, boxes=True)
    mine, listed = _read_clip_once(entry, "c0")
    theirs = entry.read_clip("c0", check="none")
    assert listed == set(layout.CLIP_ARRAYS + layout.OPTIONAL_CLIP_ARRAYS)
    for name in ("frame_indices", "keypoints", "scores", "grids", "person_boxes"):
        assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name
    assert entry.codec.digest(mine.frames) == entry.codec.digest(theirs.frames)
    fields = ("clip_id", "uid", "split", "label", "attrs", "frames_meta", "frame_shape", "grid_cell", "frames_per_segment")
    assert [getattr(mine, f) for f in fields] == [getattr(theirs, f) for f in fields]


def test_a_clip_missing_an_array_in_its_metadata_is_reported_as_read_clip_says(tmp_path):
    import json

    entry = make_entry(tmp_path, n=2)
    meta = entry.path / layout.CLIPS_DIR / "c1" / layout.ROOT_META
    m = json.loads(meta.read_text())
    del m["consolidated_metadata"]["metadata"]["grids"]
    meta.write_text(json.dumps(m))
    rep = CacheStore(tmp_path).verify(entry)
    assert list(rep.clips) == ["c1"] and "arrays ['grids'] missing" in rep.clips["c1"][0]
