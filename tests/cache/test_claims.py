"""Claims: judged by age on every host, by the process (not the pid alone) on this one, empty ones
after a grace period; a stale claim taken over by exactly one of many contenders."""
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache import claims


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_claim(path: Path, rec, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("" if rec is None else json.dumps(rec))
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def _mine(**over) -> dict:
    rec = claims.owner_record()
    rec.update(over)
    return rec


def test_live_claim_is_kept_and_one_untouched_past_the_ttl_is_stale_whatever_the_pid(tmp_path):
    c = _write_claim(tmp_path / "c", _mine())
    assert not claims.is_stale(c, ttl=600)
    assert claims.try_claim(c, ttl=600) is None  # held by a live process (this one)
    _write_claim(c, _mine(), age=700)  # this process is alive, but its heartbeat stopped 700 s ago
    assert claims.is_stale(c, ttl=600)
    token = claims.try_claim(c, ttl=600)
    assert token and claims.read_owner(c)["token"] == token


@pytest.mark.skipif(claims.process_start_time(os.getpid()) is None, reason="needs /proc")
def test_a_reused_pid_does_not_keep_a_claim(tmp_path):
    # the claim names this live pid, but a process that started long before this one
    started = claims.process_start_time(os.getpid())
    c = _write_claim(tmp_path / "c", _mine(start=started - 3 * 86400, time=started - 3 * 86400))
    assert claims.is_stale(c, ttl=10 ** 9)  # not by age: by the process
    assert claims.try_claim(c, ttl=10 ** 9)
    # a record of older code (no start time): made days before this process started
    old = {"host": claims.HOST, "pid": os.getpid(), "time": started - 3 * 86400}
    c2 = _write_claim(tmp_path / "c2", old)
    assert claims.is_stale(c2, ttl=10 ** 9) and claims.try_claim(c2, ttl=10 ** 9)
    # ... and one made after this process started is this process' own
    assert not claims.is_stale(_write_claim(tmp_path / "c3", dict(old, time=time.time())), ttl=10 ** 9)


def test_dead_owner_other_boot_and_other_hosts(tmp_path):
    assert claims.is_stale(_write_claim(tmp_path / "dead", _mine(pid=_dead_pid())))
    assert claims.is_stale(_write_claim(tmp_path / "nopid", {"host": claims.HOST, "time": time.time()}))
    if claims.BOOT_ID:
        assert claims.is_stale(_write_claim(tmp_path / "boot", _mine(boot="another-boot")))
    # the same host name in another container (pid namespace) or on another machine (machine id):
    # a pid dead here may be its live writer, so only the claim's age tells
    if claims.PID_NS:
        assert not claims.is_stale(_write_claim(tmp_path / "ns", _mine(pid=_dead_pid(), pidns="pid:[1]")), ttl=600)
        assert claims.is_stale(_write_claim(tmp_path / "ns2", _mine(pid=_dead_pid(), pidns="pid:[1]"), age=601), ttl=600)
    if claims.MACHINE_ID and claims.BOOT_ID:
        twin = _mine(pid=_dead_pid(), machine="another-machine", boot="another-boot")
        assert not claims.is_stale(_write_claim(tmp_path / "twin", twin), ttl=600)
    other = {"host": "elsewhere.example", "pid": 1, "time": time.time(), "token": "abc"}
    assert not claims.is_stale(_write_claim(tmp_path / "h1", other), ttl=600)  # cannot see its processes
    assert claims.is_stale(_write_claim(tmp_path / "h2", other, age=601), ttl=600)


def test_a_dead_writers_claim_touched_in_the_future_goes_stale(tmp_path):
    """A clock running ahead (the writer's host, or a file server's) stamped the claim two hours
    ahead: counted as a negative age it would never go stale."""
    other = {"host": "node17", "pid": 4242, "time": time.time(), "token": "deadbeef"}
    assert claims.is_stale(_write_claim(tmp_path / "c", other, age=-7200), ttl=600)
    assert not claims.is_stale(_write_claim(tmp_path / "d", other, age=-300), ttl=600)  # skew within the ttl


def test_a_file_servers_clock_running_ahead_makes_fresh_claims_young_not_stale(tmp_path, monkeypatch):
    """On NFS the server stamps files: 15 minutes ahead of this host, every fresh claim looks 15
    minutes in the future. Its age is read by the server's clock (a file made there now), so a live
    writer's claim (this process') is not taken over, and another host's fresh one is young."""
    ahead = 900.0
    mine = _write_claim(tmp_path / "mine", _mine(), age=-ahead)
    other = _write_claim(tmp_path / "other", {"host": "node17", "pid": 1, "time": time.time(), "token": "ab"},
                         age=-ahead)
    monkeypatch.setattr(claims, "filesystem_now", lambda folder: time.time() + ahead)
    assert not claims.is_stale(mine, ttl=600) and claims.try_claim(mine, ttl=600) is None
    assert not claims.is_stale(other, ttl=600)
    # where no file can be made to read that clock, a future stamp is taken as young
    monkeypatch.setattr(claims, "filesystem_now", lambda folder: None)
    assert not claims.is_stale(other, ttl=600)
    # the probe itself leaves nothing behind
    monkeypatch.undo()
    assert claims.filesystem_now(tmp_path) == pytest.approx(time.time(), abs=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "other"]


def test_empty_claim_is_taken_over_after_a_grace_period_not_the_ttl(tmp_path):
    c = _write_claim(tmp_path / "c", None)  # older code killed between create and write
    assert not claims.is_stale(c, ttl=600) and claims.try_claim(c, ttl=600) is None  # may be mid-write
    _write_claim(c, None, age=claims.EMPTY_GRACE_S + 1)
    assert claims.is_stale(c, ttl=600)
    token = claims.try_claim(c, ttl=600)
    assert token and claims.read_owner(c)["token"] == token
    _write_claim(c, None, age=claims.EMPTY_GRACE_S + 1)
    (tmp_path / "garbage").write_bytes(b"\x00\xff{")
    os.utime(tmp_path / "garbage", (time.time() - 60,) * 2)
    assert claims.is_stale(tmp_path / "garbage")


def test_takeover_follows_a_dead_contenders_marker_and_yields_to_a_live_one(tmp_path):
    c = _write_claim(tmp_path / "c", _mine(pid=_dead_pid()))
    stale_token = claims.token_of(c)
    marker = tmp_path / f"c{claims.TAKEN}{stale_token}"
    # a contender that died after winning the marker, before replacing the claim
    _write_claim(marker, _mine(pid=_dead_pid(), token="deadbeef"))
    token = claims.try_claim(c)
    assert token and claims.read_owner(c)["token"] == token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # markers and temporary records gone
    # a live contender holds the marker: the others lose, the claim stays as it is
    c2 = _write_claim(tmp_path / "c2", _mine(pid=_dead_pid()))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rec = {"host": claims.HOST, "pid": live.pid, "start": claims.process_start_time(live.pid),
               "boot": claims.BOOT_ID, "time": time.time(), "token": "1234"}
        _write_claim(tmp_path / f"c2{claims.TAKEN}{claims.token_of(c2)}", rec)
        before = c2.read_text()
        assert claims.try_claim(c2) is None and c2.read_text() == before
    finally:
        live.kill()
        live.wait()


def test_release_leaves_a_claim_that_was_taken_over(tmp_path):
    c = tmp_path / "c"
    mine = claims.try_claim(c)
    _write_claim(c, _mine())  # someone judged ours stale and took it over
    claims.release(c, mine)
    assert c.exists()
    claims.release(c, claims.token_of(c))
    assert not c.exists()


def _contender(paths, barrier, results, ttl):
    for p in paths:
        barrier.wait()
        results.put((str(p), os.getpid(), claims.try_claim(Path(p), ttl=ttl)))
        barrier.wait()


@pytest.mark.parametrize("kind", ["dead pid", "old other host", "old empty file"])
def test_concurrent_takeovers_of_one_stale_claim_have_exactly_one_winner(tmp_path, kind):
    """Real processes race for the same stale claim, many rounds: one winner per round, and the
    claim left holds the winner's record."""
    n_proc, rounds = 4, 250  # the old rename-then-create takeover had ~1 double winner in 100 rounds here
    ctx = mp.get_context("fork")
    paths = [tmp_path / f"r{i:03d}" for i in range(rounds)]
    dead = _dead_pid()
    for p in paths:
        if kind == "dead pid":
            _write_claim(p, _mine(pid=dead))
        elif kind == "old other host":
            _write_claim(p, {"host": "elsewhere.example", "pid": 1, "time": 0, "token": "abc"}, age=700)
        else:
            _write_claim(p, None, age=claims.EMPTY_GRACE_S + 5)
    barrier, results = ctx.Barrier(n_proc), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(paths, barrier, results, 600)) for _ in range(n_proc)]
    for pr in procs:
        pr.start()
    got = [results.get(timeout=120) for _ in range(n_proc * rounds)]
    for pr in procs:
        pr.join(timeout=60)
        assert pr.exitcode == 0
    for p in paths:
        winners = [(pid, tok) for path, pid, tok in got if path == str(p) and tok]
        assert len(winners) == 1, (p.name, winners)
        owner = claims.read_owner(p)
        assert (owner["pid"], owner["token"]) == winners[0]
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name for p in paths]  # no markers left


def test_gc_removes_a_stale_claim_with_its_dead_markers_but_not_a_live_takeover(tmp_path):
    c = _write_claim(tmp_path / "c", _mine(pid=_dead_pid()))
    _write_claim(tmp_path / f"c{claims.TAKEN}{claims.token_of(c)}", _mine(pid=_dead_pid(), token="d1"))
    _write_claim(tmp_path / ".c.d2.tmp", _mine(pid=_dead_pid(), token="d2"))  # a killed claimer's record
    for p in sorted(tmp_path.iterdir()):  # the marker first: it is pending while its claim is stale
        claims.remove_if_stale(p)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], [f"c{claims.TAKEN}{claims.token_of(c)}"]) and not c.exists()
    for p in tmp_path.iterdir():  # obsolete now that the claim is gone
        assert claims.remove_if_stale(p)
    assert not list(tmp_path.iterdir())
    live = _write_claim(tmp_path / "live", _mine())
    assert not claims.remove_if_stale(live) and live.exists()


def test_the_heartbeat_outlives_a_filesystem_error(tmp_path, monkeypatch, caplog):
    """An ESTALE or EIO of a network filesystem must not end the heartbeat thread: its claims would
    go stale while the clips are still being extracted, and another writer would redo them."""
    import errno
    import logging

    c = tmp_path / "c"
    assert claims.try_claim(c)
    real = os.utime
    calls = {"n": 0}

    def flaky(path, *a, **k):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "utime", flaky)
    real(c, (time.time() - 500,) * 2)
    hb = claims.Heartbeat(interval=0.05)
    with caplog.at_level(logging.WARNING, logger="cache.claims"):
        hb.add(c)
        deadline = time.time() + 10
        while time.time() - c.stat().st_mtime > 60 and time.time() < deadline:
            time.sleep(0.05)
        hb.stop()
    assert time.time() - c.stat().st_mtime < 60  # touched again after the two failures
    assert calls["n"] >= 3 and hb._thread is not None
    warned = [r.getMessage() for r in caplog.records if "could not refresh claim" in r.getMessage()]
    assert len(warned) == 1 and "Stale file handle" in warned[0]  # said once, not per beat
