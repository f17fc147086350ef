"""Damage to an entry is named and recovered: flipped bytes refused by the reader, damaged or
deleted clips repaired (moved aside, reopened, extracted again), missing metadata reported by every
command and rebuilt by extract; killed writers' staging removed; a shared root's modes checked."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cache import CacheStore, claims
from cache.chunks import ChunkDigestError, ChunkFormatError
from cache.entry import CacheEntry, EntryDamagedError
from cache.fsutil import CachePermissionError
from cache.writer import EntryWriter
from pevl_testutils import REPO, make_video, tiny_hrnet_config, write_custom_dataset
from test_store_format import make_entry

run = CliRunner().invoke


def _cli(*args):
    from pipeline.cli import app

    res = run(app, list(args))
    return res, " ".join(res.output.split())


def _flip(path: Path, at: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _chunk(entry: CacheEntry, uid: str, name: str) -> Path:
    (f,) = [p for p in (entry.path / "clips" / uid / name / "c").rglob("*") if p.is_file()]
    return f


# -- the reader checks digests ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["keypoints", "scores", "frame_indices", "grids"])
def test_reader_refuses_flipped_bytes_in_the_small_arrays(tmp_path, name):
    entry = make_entry(tmp_path)
    _flip(_chunk(entry, "c0", name), at=-2)
    # a digest mismatch, or (grids: Zstd) a frame that no longer decodes, named as damaged
    with pytest.raises(ChunkFormatError) as ex:
        entry.read_clip("c0")
    assert f"clips/c0/{name}/c/0" in str(ex.value)
    if name != "grids":
        assert isinstance(ex.value, ChunkDigestError) and "pipeline cache repair" in str(ex.value)
    else:
        assert "damaged" in str(ex.value)
    entry.read_clip("c1")  # the others read as before
    assert not CacheStore(tmp_path).verify(entry).ok


def test_frames_digest_jpeg_as_read_raw_on_request(tmp_path):
    raw = make_entry(tmp_path / "raw")
    _flip(_chunk(raw, "c0", "frames"))
    raw.read_clip("c0")  # memory-mapped raw frames are not hashed per read (docs/cache.md)
    with pytest.raises(ChunkDigestError, match="frames/c/0"):
        raw.read_clip("c0", check="all")
    assert "clips/c0: frames: content does not match its digest" in CacheStore(tmp_path / "raw").verify(raw).problems
    jpeg = make_entry(tmp_path / "jpeg", "jpeg")
    _flip(_chunk(jpeg, "c0", "frames"), at=-10)  # inside the last JPEG file
    frames = jpeg.read_clip("c0").frames  # each JPEG file checked as it is read
    with pytest.raises(ChunkDigestError, match=rf"frames/c/0 \(frame {len(frames) - 1}\)"):
        frames.decode([len(frames) - 1])


# -- missing metadata ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lost", ["zarr.json", "plan.json", "manifest.json"])
def test_missing_metadata_is_reported_by_every_command(tmp_path, lost):
    entry = make_entry(tmp_path)
    good = make_entry(tmp_path, "lz4")
    (entry.path / lost).unlink()
    root = str(tmp_path)
    res, text = _cli("cache", "ls", "--cache-root", root, "--json")
    assert res.exit_code == 0
    rows = {r["path"]: r for r in json.loads(res.stdout)}
    assert f"{lost} missing" in rows[str(entry.path)]["status"] and "damaged" in rows[str(entry.path)]["status"]
    assert rows[str(good.path)]["status"] == "complete"
    res, text = _cli("cache", "ls", "--cache-root", root)
    assert res.exit_code == 0 and "pipeline extract" in text and "gc --damaged" in text

    res, text = _cli("cache", "info", entry.path.name, "--cache-root", root)
    assert res.exit_code == 1 and f"{lost} missing" in text, text
    assert isinstance(res.exception, SystemExit)  # said, not raised

    res, text = _cli("cache", "verify", "--cache-root", root)
    assert res.exit_code == 1 and f"{lost} missing" in text and isinstance(res.exception, SystemExit), text
    res, text = _cli("cache", "verify", entry.path.name, "--cache-root", root)
    assert res.exit_code == 1 and f"{lost} missing" in text, text

    res, text = _cli("cache", "gc", "--cache-root", root)
    assert res.exit_code == 0 and "keeping damaged entry" in text and entry.path.exists()
    res, text = _cli("cache", "gc", "--damaged", "--cache-root", root)
    assert res.exit_code == 0 and not entry.path.exists() and good.path.exists()


def test_damaged_entry_opens_with_the_reason(tmp_path):
    entry = make_entry(tmp_path)
    (entry.path / "zarr.json").unlink()
    with pytest.raises(EntryDamagedError, match="zarr.json missing.*pipeline extract"):
        CacheStore(tmp_path).open(entry.path.name)
    assert CacheStore(tmp_path).entries() == []  # not readable, but listed as damaged:
    assert CacheStore(tmp_path).damaged_entries() == [(entry.path, ["zarr.json missing"])]


# -- leftovers and sharing -------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_is_removed_by_the_next_writer(tmp_path):
    entry = make_entry(tmp_path)
    staging = entry.path / ".staging"
    tag = claims.PIDS_TAG
    dead = staging / f"c0.{tag}.{_dead_pid()}.abc123"
    live = staging / f"c1.{tag}.{os.getpid()}.abc123"
    other_new = staging / "c1.elsewhere.123.abc123"
    other_old = staging / "c0.elsewhere.124.abc123"
    # the same host name in another container (pid namespace): its pids mean nothing here, a dead
    # one here may be its live writer; so are names of older code (the host name alone)
    container = staging / f"c2.{claims.HOST.replace('.', '_')}~1234567~{tag.rsplit('~', 1)[-1]}.{_dead_pid()}.ab"
    legacy = staging / f"c3.{claims.HOST.replace('.', '_')}.{_dead_pid()}.abc123"
    for d in (dead, live, other_new, other_old, container, legacy):
        (d / "frames").mkdir(parents=True)
    os.utime(other_old, (time.time() - 700,) * 2)
    removed = EntryWriter(entry, ttl=600).remove_stale_staging()
    assert sorted(removed) == sorted([dead, other_old])
    assert sorted(p.name for p in staging.iterdir()) == sorted([live.name, other_new.name, container.name,
                                                                legacy.name])


def test_a_clip_whose_staging_was_removed_mid_write_is_not_committed(tmp_path, monkeypatch):
    """A gc (or another writer) that misjudged this writer removed its staging folder; Zarr made the
    folder again on the next write: the clip must not be published with arrays missing."""
    import numpy as np

    from cache import writer as writer_mod

    entry = make_entry(tmp_path)
    w = EntryWriter(entry, ttl=600)
    uid = "late"
    assert w.claim(uid)
    real = writer_mod._fsync_tree

    def removed_meanwhile(path):
        shutil.rmtree(path)
        (Path(path) / "grids").mkdir(parents=True)  # what a later write of one array leaves
        (Path(path) / "grids" / "zarr.json").write_text("{}")
        real(path)

    monkeypatch.setattr(writer_mod, "_fsync_tree", removed_meanwhile)
    arrays = {"keypoints": np.zeros((4, 17, 2), np.float32), "grids": np.zeros((4, 2, 2), np.uint8)}
    with pytest.raises(RuntimeError, match=r"the staged clip was removed while it was written .*'keypoints'"):
        w.commit(uid, arrays, {"clip_id": uid})
    assert not (entry.path / "clips" / uid).exists()
    assert not list((entry.path / ".staging").iterdir())


def _index_writer_of_another_host(entry, monkeypatch, during_keypoints, heartbeat_s=0.05):
    """An EntryWriter whose index staging folder is named as another host's, and whose write of
    the index's keypoints runs ``during_keypoints(staging folder)`` (a slow network filesystem)."""
    import zarr

    from cache import claims

    if (entry.path / "index").exists():
        shutil.rmtree(entry.path / "index")
    real_tag, real_create = claims.PIDS_TAG, zarr.Group.create_array

    def create_array(group, name, *args, **kwargs):
        made = real_create(group, name, *args, **kwargs)
        if name == "keypoints":
            monkeypatch.setattr(claims, "PIDS_TAG", real_tag)  # this host again, for whoever judges
            during_keypoints(Path(group.store.root))
        return made

    monkeypatch.setattr(zarr.Group, "create_array", create_array)
    monkeypatch.setattr(claims, "PIDS_TAG", "otherhost~1~abcd")
    return EntryWriter(entry, ttl=0.5, heartbeat_s=heartbeat_s)


def test_an_index_written_slowly_on_another_host_is_not_taken_for_left_behind(tmp_path, monkeypatch):
    """Every extract removes other hosts' staging folders untouched for the ttl; an index's folder
    did not change while its keypoints were written, so a long write lost its folder and a
    half-written index was published as complete. It is heartbeated now, and checked whole."""
    entry = make_entry(tmp_path)
    removed = []

    def slow_write(staged):
        for _ in range(8):  # 0.8 s > ttl, the other extract looking all the while
            time.sleep(0.1)
            removed.extend(EntryWriter(CacheEntry(entry.path), ttl=0.5).remove_stale_staging())
        assert staged.is_dir()

    w = _index_writer_of_another_host(entry, monkeypatch, slow_write)
    assert w.finalize_if_complete() and not removed
    assert CacheStore(tmp_path).verify(CacheEntry(entry.path)).ok and entry.manifest()["status"] == "complete"


def test_an_index_whose_staging_was_removed_mid_write_is_not_published(tmp_path, monkeypatch):
    w = _index_writer_of_another_host(make_entry(tmp_path), monkeypatch, shutil.rmtree)
    with pytest.raises(RuntimeError, match=r"the staged index was removed while it was written.*a rerun writes it"):
        w.finalize_if_complete()
    assert not (w.path / "index").exists() and w.entry.manifest().get("status") != "complete"
    assert not list((w.path / ".staging").iterdir())


def test_run_records_of_one_process_sort_in_the_order_they_ran(tmp_path):
    """Two runs of one process within a second (in-process extracts, a notebook): their records'
    names, which the manifest lists them by, keep their order."""
    w = EntryWriter(make_entry(tmp_path))
    for i in range(20):
        w.record_run({"n": i})
    assert [r["n"] for r in _runs(w.entry)] == list(range(20))


def _setpriv_prefix() -> list:
    if os.geteuid() != 0:
        return []  # an ordinary user: folder modes apply
    if shutil.which("setpriv") is None:
        pytest.skip("as root, folder modes do not apply without setpriv to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def test_permission_error_names_the_folder_and_the_fix(tmp_path):
    entry = make_entry(tmp_path, n=3)
    shutil.rmtree(entry.path / "clips" / "c2")
    (entry.path / "claims").chmod(0o555)  # another user's folder, not group-writable
    script = ("import sys\nfrom cache.entry import CacheEntry\nfrom cache.writer import EntryWriter\n"
              f"EntryWriter(CacheEntry({str(entry.path)!r})).claim('c2')\n")
    try:
        res = subprocess.run(_setpriv_prefix() + [sys.executable, "-c", script], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    finally:
        (entry.path / "claims").chmod(0o775)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("cache.fsutil.CachePermissionError: permission denied"), res.stderr[-2000:]
    assert "claims" in last and "dr-xr-xr-x" in last and "umask 002" in last
    assert "Sharing a cache between users" in last and f"pipeline cache doctor --cache-root {tmp_path}" in last
    assert CachePermissionError.__mro__[1].__name__ == "CacheFault"


def test_doctor_checks_group_setgid_and_umask(tmp_path):
    root = tmp_path / "cache"
    make_entry(root)
    for d, _, _ in os.walk(root):
        os.chmod(d, 0o755)
    old = os.umask(0o022)
    try:
        res, text = _cli("cache", "doctor", "--cache-root", str(root))
        assert res.exit_code == 1
        assert "not group-writable" in text and "no setgid bit" in text and "your umask is 0022" in text
        assert "chmod -R g+rwX" in text and "umask 002" in text
        for d, _, _ in os.walk(root):
            os.chmod(d, 0o2775)
        os.umask(0o002)
        res, text = _cli("cache", "doctor", "--cache-root", str(root), "--all")
        assert res.exit_code == 0 and "ok" in text and "umask 0002" in text, text
    finally:
        os.umask(old)


def test_another_users_private_folders_are_explained_by_every_command_and_doctor(tmp_path):
    """A colleague extracted with umask 077 into a cache set up for sharing: `cache ls`, `info`,
    `verify`, `gc` and `extract` printed '[Errno 13] Permission denied' alone, and `cache doctor`,
    the command for exactly this, crashed on it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    root = tmp_path / "cache"
    make_entry(root)
    for d, _, _ in os.walk(root):
        os.chmod(d, 0o2775)
    os.chown(root / "entries", 12345, -1)  # the colleague's, made with umask 077
    (root / "entries").chmod(0o2700)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        for args in (["cache", "ls"], ["cache", "doctor"]):
            res = subprocess.run(_setpriv_prefix() + [sys.executable, "-m", "pipeline", *args, "--cache-root",
                                                      str(root)], capture_output=True, text=True, env=env, timeout=300)
            text = " ".join((res.stdout + res.stderr).split())
            assert "Traceback" not in text and "[Errno 13]" not in text, text[-2000:]
            if args[-1] == "ls":
                assert res.returncode == 2 and f"permission denied: {root / 'entries'}" in text and "drwx--S---" in text
                assert f"pipeline cache doctor --cache-root {root}" in text
            else:
                assert res.returncode == 1 and "not readable by you" in text and "drwx--S---" in text, text
    finally:
        os.chown(root / "entries", 0, -1)
        (root / "entries").chmod(0o2775)


def test_extract_warns_a_umask_that_keeps_its_files_from_a_shared_roots_group(tmp_path):
    from cache.sharing import umask_hides_from_group

    root = tmp_path / "cache"
    root.mkdir()
    root.chmod(0o2775)
    old = os.umask(0o077)
    try:
        said = umask_hides_from_group(root)
        assert said and "umask is 0077" in said and "neither readable nor writable" in said and "umask 002" in said
        os.umask(0o022)
        assert "not writable by the others" in umask_hides_from_group(root)
        os.umask(0o002)
        assert umask_hides_from_group(root) is None
        os.umask(0o077)
        root.chmod(0o755)  # a private cache: the umask is the user's business
        assert umask_hides_from_group(root) is None
    finally:
        os.umask(old)


# -- with real extraction -------------------------------------------------------------------------------
@pytest.fixture
def extracted(tmp_path):
    """A finished entry of 4 real clips (a small HRNet), and how to run `pipeline extract` on it again."""
    root = tmp_path / "data"
    clips = []
    for i in range(4):
        make_video(root / f"v{i}.mp4", frames=6, size=(48, 32))
        clips.append((f"v{i}.mp4", i % 2, "train"))
    write_custom_dataset(root, clips, ["jump", "spin"])
    cache_root = tmp_path / "cache"

    def extract():
        res, text = _cli("extract", "--dataset", "custom", "--root", str(root), "--cache-root", str(cache_root),
                         "--coarse-type", "x", "--pose-checkpoint", "none", "--pose-config", tiny_hrnet_config(),
                         "--no-pose-flip-test")
        assert res.exit_code == 0, text[-3000:]
        return text

    extract()
    (entry,) = CacheStore(cache_root).entries("custom")
    assert (entry.path / "index").is_dir()
    return entry, cache_root, extract


def _runs(entry):
    return [json.loads(p.read_text()) for p in sorted((entry.path / "runs").glob("*.json"))]


def test_repair_of_a_flipped_and_a_deleted_clip_then_extract_redoes_them_and_rebuilds_metadata(extracted):
    entry, cache_root, extract = extracted
    _flip(_chunk(entry, "v1", "keypoints"))
    shutil.rmtree(entry.path / "clips" / "v2")
    with pytest.raises(ChunkDigestError):  # training would stop here, naming the file, never train on it
        entry.read_clip("v1")
    root = str(cache_root)
    res, text = _cli("cache", "repair", entry.key, "--cache-root", root, "--dry-run")
    assert res.exit_code == 0 and "would move clips/v1 to quarantine/" in text and "would reopen" in text
    assert (entry.path / "clips" / "v1").is_dir() and (entry.path / "index").is_dir()

    res, text = _cli("cache", "repair", entry.key, "--cache-root", root)
    assert res.exit_code == 0, text
    assert "moved clips/v1 to quarantine/: keypoints: content does not match its digest" in text
    assert "reopened" in text and "2 clip(s) to extract: run `pipeline extract --dataset custom --root" in text
    assert not (entry.path / "index").exists() and entry.manifest()["status"] == "incomplete"
    assert sorted(entry.status().missing) == ["v1", "v2"] and not entry.is_complete
    assert "incomplete" in json.loads(_cli("cache", "ls", "--cache-root", root, "--json")[0].stdout)[0]["status"]
    (moved,) = [p for p in (entry.path / "quarantine").iterdir() if p.is_dir()]
    assert json.loads(moved.with_name(moved.name + ".json").read_text())["clip_id"] == "v1"

    text = extract()
    assert "2 to do" in text
    assert sorted(_runs(entry)[-1]["done_clip_ids"]) == ["v1", "v2"]  # exactly the two, nothing else
    assert entry.status().complete and (entry.path / "index").is_dir()
    assert entry.manifest()["status"] == "complete" and entry.manifest()["reopened"]
    assert CacheStore(cache_root).verify(entry).ok
    entry.read_clip("v1")
    res, text = _cli("cache", "gc", "--cache-root", root)
    assert "damaged clip moved aside" in text and not list((entry.path / "quarantine").iterdir())

    # a clip deleted from a finished entry: extract alone reopens it for that clip
    shutil.rmtree(entry.path / "clips" / "v3")
    text = extract()
    assert "reopened" in text and "1 to do" in text and _runs(entry)[-1]["done_clip_ids"] == ["v3"]
    assert entry.status().complete and CacheStore(cache_root).verify(entry).ok

    # the entry's own metadata lost: extract (same options, so the same key and folder) rebuilds it
    for name in ("zarr.json", "plan.json", "manifest.json", "clips/zarr.json"):
        (entry.path / name).unlink()
    assert CacheStore(cache_root).entries() == []
    text = extract()
    assert "damaged" in text and "rebuilding its metadata" in text and "0 to do" in text, text
    (again,) = CacheStore(cache_root).entries("custom")
    assert again.path == entry.path and again.status().complete
    m = again.manifest()
    assert m["status"] == "complete" and m["metadata_rebuilt"][0]["problems"] == [
        "zarr.json missing", "plan.json missing", "manifest.json missing", "clips/zarr.json missing"]
    assert CacheStore(cache_root).verify(again).ok and not CacheStore(cache_root).damaged_entries()


def test_a_missing_cache_root_is_an_error_not_an_empty_cache(tmp_path, monkeypatch):
    """A mistyped --cache-root, or a shared mount that is down, must not list, verify or gc as an
    empty cache that is fine (exit 0)."""
    (tmp_path / "afile").write_text("x")
    for root, says in ((tmp_path / "nope", f"no cache at {tmp_path / 'nope'} (--cache-root): the path is mistyped"),
                       (tmp_path / "afile", f"{tmp_path / 'afile'} (--cache-root) is not a folder")):
        for cmd in (["ls"], ["verify"], ["gc", "--dry-run"], ["info", "abc"], ["doctor"]):
            res, out = _cli("cache", *cmd, "--cache-root", str(root))
            assert res.exit_code != 0 and says in out, (cmd, out)
    assert not (tmp_path / "nope").exists()
    # an entry named by its path needs no root; a root from $PEVL_CACHE is named as such
    entry = make_entry(tmp_path / "real")
    for cmd in (["info", str(entry.path)], ["verify", str(entry.path)]):
        res, out = _cli("cache", *cmd, "--cache-root", str(tmp_path / "nope"))
        assert res.exit_code == 0, (cmd, out)
    monkeypatch.setenv("PEVL_CACHE", str(tmp_path / "nope"))
    res, out = _cli("cache", "ls")
    assert res.exit_code != 0 and f"no cache at {tmp_path / 'nope'} ($PEVL_CACHE or --cache-root)" in out, out


def test_extract_into_a_symlinked_root_whose_target_is_gone_says_so(tmp_path):
    """A cache root that is a symlink onto an unmounted share: extract said "starting one there", then
    failed with "[Errno 17] File exists: '<root>'"."""
    (tmp_path / "data").mkdir()
    (tmp_path / "root").symlink_to(tmp_path / "share" / "cache")
    res, out = _cli("extract", "--dataset", "custom", "--root", str(tmp_path / "data"),
                    "--cache-root", str(tmp_path / "root"))
    assert res.exit_code == 2 and f"the cache root {tmp_path / 'root'} is a symlink to {tmp_path / 'share' / 'cache'}, " \
        "which does not exist: is its filesystem mounted?" in out, out
    assert not (tmp_path / "share").exists()


def test_file_too_large_is_explained_like_a_full_disk(tmp_path):
    """EFBIG (a `ulimit -f` or a batch system's file size limit; Python ignores SIGXFSZ) said with
    where and what to do, as ENOSPC is, not as a bare '[Errno 27] File too large'."""
    import errno

    from cache.fsutil import DiskFullError, explain_os_error

    fault = explain_os_error(OSError(errno.EFBIG, "File too large"), tmp_path / "entries" / "x")
    assert isinstance(fault, DiskFullError)
    text = str(fault)
    assert text.startswith(f"file too large while writing {tmp_path / 'entries' / 'x'} (on the filesystem mounted at ")
    assert "`ulimit -f`" in text and "a rerun continues" in text
    assert "a rerun continues" in str(explain_os_error(OSError(errno.ENOSPC, "No space"), tmp_path))


def test_gc_counts_only_what_it_removed_and_lists_what_is_left(tmp_path, monkeypatch):
    """Files gc may not remove (another user's, a read-only mount) are named, not counted as freed
    (it said 'freed 198 KiB' and exit 0 having removed nothing); the folder renamed aside stays
    listed by the next gc, which removes it once it can."""
    from cache import fsutil

    entry = make_entry(tmp_path)
    q = entry.path / "quarantine" / "c0.20261205"
    q.mkdir(parents=True)
    (q / "frames").write_bytes(b"x" * 5000)
    real = fsutil.shutil.rmtree

    def not_allowed(path, onerror=None, **kw):
        onerror(os.unlink, os.path.join(path, "frames"), (PermissionError, PermissionError(13, "Permission denied"),
                                                          None))

    monkeypatch.setattr(fsutil.shutil, "rmtree", not_allowed)
    res, out = _cli("cache", "gc", "--cache-root", str(tmp_path))
    assert res.exit_code == 1 and "freed 0 B" in out and "1 not removed" in out and "Permission denied" in out, out
    (aside,) = (entry.path / "quarantine").iterdir()
    assert ".deleting-" in aside.name
    monkeypatch.setattr(fsutil.shutil, "rmtree", real)
    acts = CacheStore(tmp_path).gc_plan()
    assert [(a.path, a.why) for a in acts] == [(aside, "left by a removal that did not finish")]
    res, out = _cli("cache", "gc", "--cache-root", str(tmp_path))
    assert res.exit_code == 0 and "not removed" not in out and not aside.exists(), out


def test_gc_leaves_an_entry_that_a_live_process_reads(tmp_path, caplog):
    """`gc --keep-last` / `--incomplete-older-than` removed the entry a training run was reading
    (judged by the entry's files alone); a reader's mark keeps it, and a dead reader's mark goes."""
    import logging

    from cache.readers import reader_marks, reading

    entry = make_entry(tmp_path)
    shutil.rmtree(entry.path / "clips" / "c1")  # incomplete: what --incomplete-older-than 0 removes
    store = CacheStore(tmp_path)
    with reading(entry.path):
        (mark,), _ = reader_marks(entry.path)
        with caplog.at_level(logging.WARNING, logger="cache.store"):
            assert [a.path for a in store.gc_plan(incomplete_older_than_days=0)] == []
        assert f"leaving entry {entry.path} (incomplete" in caplog.text and f"pid {os.getpid()}" in caplog.text
    assert not mark.exists() and reader_marks(entry.path) == ([], [])  # released when the block ends
    # a reader killed outright leaves its mark: judged dead, gc removes it, and the entry is no longer kept
    dead = entry.path / "readers" / f"{claims.PIDS_TAG}.{_dead_pid()}.ab"
    rec = dict(claims.owner_record(), pid=int(dead.name.split(".")[-2]))
    dead.write_text(json.dumps(rec))
    acts = store.gc_plan(incomplete_older_than_days=0)
    assert {(a.path, a.why.split(",")[0]) for a in acts} == {(dead, "mark of a reader that is gone"),
                                                            (entry.path, "incomplete")}
    # a reader that comes between the plan and the removal keeps the entry too
    with reading(entry.path):
        store.gc(acts)
        assert entry.path.is_dir() and not dead.exists()
    # and a reader of an entry removed meanwhile does not bring back an empty skeleton of it
    store.gc(store.gc_plan(incomplete_older_than_days=0))
    assert not entry.path.exists()
    with reading(entry.path):
        assert not entry.path.exists()


def test_a_full_disk_while_the_index_is_written_names_the_index_and_leaves_no_staging(tmp_path, monkeypatch):
    """The index is written after the last clip: a full disk then said 'a clip being written is not
    committed' (all clips were) and left the half-written index in .staging/ for a later run."""
    import errno

    from cache.fsutil import DiskFullError

    from cache import writer as writer_mod

    entry = make_entry(tmp_path)
    real = writer_mod._fsync_tree

    def full(path):
        if Path(path).name.startswith("index."):  # written, then the disk fills before it is synced
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(writer_mod, "_fsync_tree", full)
    with pytest.raises(DiskFullError, match=rf"no space left on the filesystem holding {entry.path / 'index'} "):
        EntryWriter(entry).finalize_if_complete()
    assert not (entry.path / "index").exists() and not list((entry.path / ".staging").iterdir())
    monkeypatch.undo()
    assert EntryWriter(entry).finalize_if_complete() and (entry.path / "index").is_dir()


def test_gc_leaves_an_incomplete_entry_a_live_extraction_writes_into(tmp_path, caplog):
    """`gc --incomplete-older-than 0` (or a negative value, which the CLI took) removed an entry
    whose extraction was under way: its activity is its clips' folder, and a slow clip (HRNet on
    a long video) leaves it untouched for minutes. A live writer's claim keeps it."""
    import logging

    entry = make_entry(tmp_path)
    shutil.rmtree(entry.path / "clips" / "c1")
    claim = entry.path / "claims" / "c1"
    claim.parent.mkdir(exist_ok=True)
    assert claims.try_claim(claim) is not None  # this process writes c1 now
    store = CacheStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cache.store"):
        assert [a.path for a in store.gc_plan(incomplete_older_than_days=0)] == []
    assert f"leaving incomplete entry {entry.path}: live writers hold 1 clip claim(s) in it now" in caplog.text
    claims.release(claim)
    assert [a.path for a in store.gc_plan(incomplete_older_than_days=0)] == [entry.path]
    for bad in (["--keep-last", "0"], ["--incomplete-older-than", "-1"]):
        res, out = _cli("cache", "gc", "--cache-root", str(tmp_path), "-n", *bad)
        assert res.exit_code == 2 and "Invalid value for" in out, out


def test_ls_of_a_misspelt_dataset_says_which_are_there(tmp_path):
    make_entry(tmp_path)
    res, out = _cli("cache", "ls", "--cache-root", str(tmp_path), "--dataset", "tyo")
    assert res.exit_code == 0 and "no entries of dataset 'tyo'" in out and "did you mean 'toy'?" in out, out


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def _root_attrs(data: dict) -> dict:
    return data["attributes"]


def test_an_entrys_own_metadata_changed_after_writing_is_refused_and_extract_writes_it_again(extracted):
    """plan.json's labels and splits and the root's settings were trusted as read: a label edited
    by hand trained on silently, and frames_per_segment 3 -> 1 read 48 candidates as 48 segments.
    They are checked against sources.json and the key (which name the folder); extract rebuilds."""
    from stages.data.dataset import CacheClipDataset as CacheDataset

    entry, cache_root, extract = extracted
    plan, root_meta, sources = entry.path / "plan.json", entry.path / "zarr.json", entry.path / "sources.json"
    original = {p: p.read_bytes() for p in (plan, root_meta, sources)}

    def relabel(d):
        d["clips"][1]["label"] = 1 - d["clips"][1]["label"]

    cases = [(plan, relabel, "plan.json disagrees with sources.json (which the key hashes) for 1 clip(s): v1's label"),
             (root_meta, lambda d: _root_attrs(d)["settings"].update(num_frames=3),
              "zarr.json holds a dataset, settings, pose or dataset options that do not hash to its settings_hash"),
             (root_meta, lambda d: _root_attrs(d).update(classes=["spin", "jump"]),
              "zarr.json holds classes other than sources.json"),
             (sources, lambda d: d["sources"][0].update(label=1), "sources.json does not hash to the key's sources_hash")]
    for path, edit, says in cases:
        _edit_json(path, edit)
        opened = CacheEntry(entry.path)
        with pytest.raises(EntryDamagedError, match="pipeline extract") as ex:
            CacheDataset(opened, "train")
        assert says in str(ex.value), str(ex.value)
        rep = CacheStore(cache_root).verify(opened)
        assert says in rep.problems[0] and rep.problems[-1].startswith("clips not checked") and not rep.clips
        res, text = _cli("cache", "repair", entry.key, "--cache-root", str(cache_root))
        assert res.exit_code == 1 and says in text and not (entry.path / "quarantine").exists()
        text = extract()
        assert "rebuilding its metadata" in text and "0 to do" in text, text
        if path != root_meta:  # (the root's is written anew: its creation time is this run's)
            assert json.loads(path.read_text()) == json.loads(original[path])
        again = CacheEntry(entry.path)
        assert again.settings == entry.settings and again.classes == entry.classes and again.plan == entry.plan
        assert CacheStore(cache_root).verify(again).ok
        CacheDataset(again, "train")


def test_an_entry_of_older_code_without_its_key_skeleton_still_checks(extracted):
    """Entries written before ``key_skeleton`` was recorded hashed the dataset's skeleton, which
    differs from the stored joints' one for HRNet on Toyota-Smarthome: the known ones are tried."""
    from cache.entry import KEY_SKELETONS_BEFORE_RECORDED, identity_problems
    from stages.skeletons import SKELETONS

    assert set(SKELETONS) <= set(KEY_SKELETONS_BEFORE_RECORDED)
    entry, _, _ = extracted
    assert _root_attrs(json.loads((entry.path / "zarr.json").read_text()))["key_skeleton"] == "coco17"
    _edit_json(entry.path / "zarr.json", lambda d: (_root_attrs(d).pop("key_skeleton"),
                                                    _root_attrs(d).update(skeleton="toyota13")))
    assert identity_problems(entry.path) == []
    _edit_json(entry.path / "zarr.json", lambda d: _root_attrs(d)["settings"].update(grid_cell=8))
    assert "settings_hash" in identity_problems(entry.path)[0]


@pytest.mark.parametrize("digest", [True, False], ids=["attrs-digest", "older-clip"])
def test_a_clips_attributes_changed_after_writing_are_refused_and_repaired(extracted, digest):
    """A clip's label, scale and sizes had no digest: a changed label trained on (the JPEG path and
    --allow-partial read it), and repair rebuilt the index from a changed scale. Now the reader and
    verify compare them with their digest and the plan (clips of older code: the plan, and the
    scale with the sizes it was made from); repair moves such a clip aside, extract redoes it."""
    entry, cache_root, extract = extracted
    meta = entry.path / "clips" / "v1" / "zarr.json"
    attrs = _root_attrs(json.loads(meta.read_text()))
    assert attrs["attrs_digest"] and entry.read_clip("v1").label == 1
    if not digest:
        _edit_json(meta, lambda d: _root_attrs(d).pop("attrs_digest"))
        entry.read_clip("v1")  # an older clip, as written, reads
    sx, sy = attrs["scale"]
    for change, says in (({"label": 0}, "label 0, the entry's plan.json says 1"),
                         ({"scale": [sx * 3, sy]}, "scale [")):
        before = meta.read_text()
        _edit_json(meta, lambda d: _root_attrs(d).update(change))
        with pytest.raises(ChunkDigestError, match="pipeline cache repair") as ex:
            CacheEntry(entry.path).read_clip("v1")
        msg = str(ex.value)
        assert "clips/v1/zarr.json: attributes not as written" in msg and says in msg, msg
        assert ("attributes do not match their digest" in msg) == digest
        rep = CacheStore(cache_root).verify(CacheEntry(entry.path))
        assert list(rep.clips) == ["v1"] and says in " ".join(rep.clips["v1"])
        meta.write_text(before)
    _edit_json(meta, lambda d: _root_attrs(d).update(scale=[sx * 3, sy]))
    res, text = _cli("cache", "repair", entry.key, "--cache-root", str(cache_root))
    assert res.exit_code == 0 and "moved clips/v1 to quarantine/" in text, text
    text = extract()
    assert "1 to do" in text
    assert CacheStore(cache_root).verify(CacheEntry(entry.path)).ok
    assert CacheEntry(entry.path).read_clip("v1").scale == (sx, sy)


def test_a_reader_that_cannot_mark_itself_says_so(tmp_path, monkeypatch, caplog):
    """A run on another user's entry (no write access) got no reader mark with only a debug line:
    nothing told it that the owner's `cache gc` could remove the entry under it."""
    import logging

    from cache.readers import reading, reader_marks

    entry = make_entry(tmp_path)

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(claims, "try_claim", denied)
    with caplog.at_level(logging.WARNING, logger="cache.readers"), reading(entry.path):
        assert reader_marks(entry.path) == ([], [])
    assert f"could not mark itself as a reader of {entry.path} (Permission denied)" in caplog.text


def test_a_fixed_label_reuses_the_clips_of_the_entry_before_it(extracted):
    """One label fixed in train.csv (or the videos touched) made a new entry, and every clip was
    decoded and posed again: with real HRNet on a real dataset, GPU-days. The clips of the entry of
    the same settings, videos and cuts are taken (hard links), with this plan's labels."""
    entry, cache_root, extract = extracted
    root = Path(json.loads((entry.path / "zarr.json").read_text())["attributes"]["dataset_root"])
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace("v1.mp4,1", "v1.mp4,0"))
    for d in (entry.path / "clips" / "v1").rglob("*"):  # another user's protected entry: its modes stay its own
        if d.is_dir():
            d.chmod(0o555)
    (entry.path / "clips" / "v1").chmod(0o555)
    text = extract()
    assert f"4 reused from entry {entry.key} (same videos and settings: not decoded or posed again)" in text, text
    assert "decoded 0 clips" in text and "0 pose calls" in text
    fixed = [e for e in CacheStore(cache_root).entries("custom") if e.key != entry.key]
    assert len(fixed) == 1 and fixed[0].is_complete and CacheStore(cache_root).verify(fixed[0]).ok
    new, old = fixed[0].read_clip("v1"), entry.read_clip("v1")
    assert (new.label, old.label) == (0, 1) and new.attrs["reused_from"]["entry"] == entry.key
    assert np.array_equal(new.keypoints, old.keypoints) and np.array_equal(np.asarray(new.frames), np.asarray(old.frames))
    assert os.stat(_chunk(fixed[0], "v1", "keypoints")).st_ino == os.stat(_chunk(entry, "v1", "keypoints")).st_ino
    assert _runs(fixed[0])[-1]["reused"] == 4
    copied = fixed[0].path / "clips" / "v1"
    assert all(d.stat().st_mode & 0o200 for d in [copied, *copied.rglob("*")] if d.is_dir())
    # the videos touched (same bytes, new mtime) and a label fixed again: taken by content
    for v in root.glob("v*.mp4"):
        os.utime(v, ns=(1_800_000_000_000_000_000,) * 2)
    csv.write_text(csv.read_text().replace("v0.mp4,0", "v0.mp4,1"))
    text = extract()
    assert "4 reused from entr" in text and "0 pose calls" in text, text
    # another video under the same name: extracted, not taken
    make_video(root / "v2.mp4", frames=7, size=(48, 32))
    csv.write_text(csv.read_text().replace("v0.mp4,1", "v0.mp4,0"))
    text = extract()
    assert "3 reused from entr" in text and "1 extracted" in text, text


def test_a_damaged_or_vanishing_clip_of_the_entry_before_is_extracted_not_taken(extracted, monkeypatch):
    """Hard-linking a clip whose keypoints were damaged copied the damage (repair then took the same
    file again); a copy that failed (the other entry removed meanwhile) stopped the whole run."""
    from cache import writer as writer_mod

    entry, cache_root, extract = extracted
    root = Path(json.loads((entry.path / "zarr.json").read_text())["attributes"]["dataset_root"])
    _flip(_chunk(entry, "v3", "keypoints"))
    real = writer_mod.EntryWriter.commit_copy

    def vanishing(self, uid, src, attrs):  # v2's folder gone by the time it is copied
        return real(self, uid, src.with_name("gone") if uid == "v2" else src, attrs)

    monkeypatch.setattr(writer_mod.EntryWriter, "commit_copy", vanishing)
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace("v1.mp4,1", "v1.mp4,0"))
    text = extract()
    assert "2 extracted, 2 reused from entry" in text, text
    (fixed,) = [e for e in CacheStore(cache_root).entries("custom") if e.key != entry.key]
    assert CacheStore(cache_root).verify(fixed).ok and fixed.is_complete
    assert "reused_from" not in fixed.read_clip("v3").attrs and "reused_from" not in fixed.read_clip("v2").attrs


def _victim(root: Path) -> Path:
    """A researcher's folder outside the cache, old enough for every age rule of gc."""
    v = root / "victim"
    (v / "thesis").mkdir(parents=True)
    (v / "thesis" / "chapter1.tex").write_text("years of work")
    (v / "notes.txt").write_text("x")
    old = time.time() - 3 * 86400
    for p in (v / "thesis" / "chapter1.tex", v / "notes.txt", v / "thesis", v):
        os.utime(p, (old, old))
    return v


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["quarantine", ".staging", "claims", "readers"])
def test_gc_and_writers_do_not_reach_through_an_entry_folder_that_is_a_link(tmp_path, name, caplog):
    """An entry's own folder replaced by a symbolic link (a mistaken ln -s, or a colleague's doing):
    gc removed everything it pointed to as quarantined clips, dead writers' staging or stale claims,
    and the next extraction's writer emptied a linked .staging/. Now gc leaves it, saying so, and a
    writer refuses the entry naming the link."""
    from cache.fsutil import CacheFault

    cache_root = tmp_path / "cache"
    entry = make_entry(cache_root)
    victim = _victim(tmp_path)
    before = _all_files(victim)
    shutil.rmtree(entry.path / name, ignore_errors=True)
    (entry.path / name).symlink_to(victim, target_is_directory=True)
    store = CacheStore(cache_root)
    assert not [a for a in store.gc_plan(damaged=True) if victim in a.path.parents or a.path == victim]
    assert f"{name}/ is a symbolic link to {victim}" in caplog.text
    res, out = _cli("cache", "gc", "--damaged", "--cache-root", str(cache_root))
    assert res.exit_code == 0, out
    with pytest.raises(CacheFault, match=f"{name}/ is a symbolic link to {victim}.*remove the link"):
        EntryWriter(entry)
    assert _all_files(victim) == before


def test_gc_removes_no_folder_that_is_not_an_entry_and_nothing_a_linked_entry_points_to(tmp_path, caplog):
    """gc --damaged removed a folder under entries/DATASET/ with none of an entry's files (a link
    to someone's folder: their thesis went); and a whole entry that is a link is left with its data
    (a dataset's entries moved to another disk), the warning naming where it points."""
    cache_root = tmp_path / "cache"
    entry = make_entry(cache_root)
    victim = _victim(tmp_path)
    before = _all_files(victim)
    (entry.path.parent / "0123456789abcdef").symlink_to(victim, target_is_directory=True)
    (entry.path.parent / "plainfolder").mkdir()
    moved = tmp_path / "other_disk" / entry.path.name
    moved.parent.mkdir()
    shutil.move(str(entry.path), moved)
    entry.path.symlink_to(moved, target_is_directory=True)
    acts = CacheStore(cache_root).gc_plan(damaged=True, keep_last=0)  # the entry superseded by nothing
    assert acts == [], acts
    assert CacheStore(cache_root).damaged_entries() == []  # nor listed as damaged by ls / verify (exit 1 forever)
    res, out = _cli("cache", "verify", "--quick", "--cache-root", str(cache_root))
    assert res.exit_code == 0 and "damaged" not in out, out
    assert "not a cache entry" in caplog.text and f"a symbolic link to {moved}" in caplog.text
    res, out = _cli("cache", "gc", "--damaged", "--cache-root", str(cache_root))
    assert res.exit_code == 0, out
    assert _all_files(victim) == before and (moved / "zarr.json").is_file() and (entry.path.parent / "plainfolder").is_dir()


def test_remove_tree_of_a_link_removes_the_link_alone(tmp_path):
    from cache.fsutil import dir_size, remove_tree

    victim = _victim(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(victim, target_is_directory=True)
    assert dir_size(link) == dir_size(victim) > 0  # a linked entry's size is its data's (cache ls, manifests)
    assert remove_tree(link) == [] and not os.path.lexists(link)
    assert (victim / "thesis" / "chapter1.tex").read_text() == "years of work"
