"""stages.devices: CPU threads for worker processes."""


def test_workers_share_the_cpus_this_process_may_use_within_omp_num_threads(monkeypatch):
    """A worker took os.cpu_count() // N threads: on a 64-core node with one CPU allowed (taskset,
    SLURM's --cpus-per-task) and OMP_NUM_THREADS=1, each worker ran 16 torch threads on that CPU."""
    from stages import devices

    monkeypatch.setattr(devices.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert devices.threads_per_worker(4) == 1
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert devices.threads_per_worker(2) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert devices.threads_per_worker(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert devices.threads_per_worker(2) == 8
