"""stages/train/work_dir_lock.py: one run per variant folder, and the lock goes with its holder."""
import os
import subprocess
import sys

import pytest

from stages.train.work_dir_lock import LOCK_FILE, WorkDirBusyError, hold_variant_dir


def test_a_second_holder_is_refused_naming_the_first_and_a_killed_holder_leaves_no_lock(tmp_path):
    with hold_variant_dir(tmp_path):
        with pytest.raises(WorkDirBusyError, match=rf"another `pipeline train` \(pid {os.getpid()} on "):
            with hold_variant_dir(tmp_path):
                pass
    with hold_variant_dir(tmp_path):  # released with the block
        pass
    # a holder killed outright (SIGKILL: no clean-up runs) leaves the folder free
    code = ("import os, signal, sys; from pathlib import Path; from stages.train.work_dir_lock import hold_variant_dir\n"
            "with hold_variant_dir(Path(sys.argv[1])): os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=os.getcwd())
    assert proc.returncode == -9 and (tmp_path / LOCK_FILE).is_file()
    with hold_variant_dir(tmp_path):
        pass


def test_the_lock_goes_with_the_block_though_a_forked_worker_lives_on(tmp_path):
    """Loader and decode workers are forked and inherit the lock's descriptor: closing it alone
    left the folder locked, under the parent's pid, until they exited."""
    import signal
    import time

    with hold_variant_dir(tmp_path):
        child = os.fork()
        if child == 0:  # a worker that outlives the block
            time.sleep(30)
            os._exit(0)
    try:
        with hold_variant_dir(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
