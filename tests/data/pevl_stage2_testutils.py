"""A small real cache entry for stage-two tests: the generated demo dataset, shrunk, extracted
through the real `pipeline extract` code path (decode + the dataset's shipped poses) once per
test session and shared by tests/data and tests/train."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

#: 10 classes x (2 train + 1 val) clips of 32 frames, 176 x 128
DEMO_OPTIONS = dict(clips_per_class=(2, 1), num_frames=32, workers=1)  # passed as `-o` strings


def small_demo_data_cfg(base: Path, frames_codec: str = "none", frames_per_segment: int = 1) -> dict:
    return dict(dataset="demo", root=str(base / "data"), pose_source=None,
                extract=dict(num_frames=16, short_side=128, grid_cell=16,
                             frames_per_segment=frames_per_segment,
                             **({"frames_codec": frames_codec} if frames_codec != "none" else {})),
                dataset_options=dict(DEMO_OPTIONS), train_split="train", test_split="val")


def small_demo_entry(tmp_path_factory, frames_codec: str = "none",
                     frames_per_segment: int = 1) -> tuple[Path, Path, dict]:
    """(cache_root, entry_dir, data_cfg) of the shared small demo entry (made on first use);
    one entry per frames codec and candidates per segment, from the same generated videos."""
    from pipeline.engines.local import run_extract
    from stages.data.entry_lookup import extract_options

    base = tmp_path_factory.getbasetemp() / "stage2_small_demo"
    base.mkdir(exist_ok=True)
    cache = base / "cache"
    data_cfg = small_demo_data_cfg(base, frames_codec, frames_per_segment)
    marker = base / f"entry-{frames_codec}-k{frames_per_segment}.json"
    with open(base / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if not marker.is_file():
            rep = run_extract(extract_options(data_cfg, str(cache)))
            assert rep.complete, rep.failures
            marker.write_text(json.dumps({"entry": str(rep.entry.path)}))
    return cache, Path(json.loads(marker.read_text())["entry"]), data_cfg


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """(cache_root, entry_dir, data_cfg) of a 30-clip demo entry made by the real extraction.
    Import it into a test module (``from pevl_stage2_testutils import small_demo``)."""
    return small_demo_entry(tmp_path_factory)


@pytest.fixture(scope="session")
def small_demo_jpeg(tmp_path_factory):
    """The same small demo entry with ``--frames-codec jpeg`` (quality 95)."""
    return small_demo_entry(tmp_path_factory, "jpeg")


@pytest.fixture(scope="session")
def small_demo_k3(tmp_path_factory):
    """The same small demo entry with three candidate frames per segment (``--frames-per-segment 3``)."""
    return small_demo_entry(tmp_path_factory, frames_per_segment=3)


@pytest.fixture(scope="session")
def small_demo_yuv420(tmp_path_factory):
    """The same small demo entry with ``--frames-codec yuv420``."""
    return small_demo_entry(tmp_path_factory, "yuv420")
