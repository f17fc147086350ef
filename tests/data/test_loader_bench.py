"""bench/loader.py runs on any entry (a custom dataset here) and reports every figure; no timing is
asserted (benchmarks report ratios; tests only check the bench works and its figures are sane)."""
import os
import sys

import pytest

from pevl_testutils import REPO


@pytest.fixture(scope="module")
def loader_bench():
    sys.path.insert(0, str(REPO / "bench"))
    import loader

    return loader


def test_loader_bench_measures_synthetic_and_named_custom_entries(loader_bench, tmp_path, capsys):
    cores = os.sched_getaffinity(0)
    args = ["--work-dir", str(tmp_path), "--clips", "2", "--seconds", "0.4", "--size", "160x96", "--crop", "64",
            "--min-seconds", "0", "--decode-clips", "1", "--rounds", "1", "--baseline-clips", "1",
            "--baseline-rounds", "1", "--worker-batches", "2", "--cold-rounds", "1"]
    out = loader_bench.main(args)
    assert os.sched_getaffinity(0) == cores  # the one-core pinning is undone
    raw, raw3, yuv, yuv3, jpeg, jpeg3 = out["entries"]
    assert [(e["frames_codec"], e["frame_shape"][0]) for e in out["entries"]] == \
        [("none", 16), ("none", 48), ("yuv420", 16), ("yuv420", 48), ("jpeg", 16), ("jpeg", 48)]  # K = 1 and 3
    assert raw["dataset"] == "custom"
    for r in out["entries"]:
        assert r["items_per_s_core"] > 0 and r["copy_ms"] > 0 and r["bytes_read_per_item"] > 0
        assert r["on_the_fly_clips_per_s"] > 0 and r["cache_over_on_the_fly"] > 0
        assert r["frame_shape"][1:] == [256, 432, 3] and r["crop"] == 64
    assert raw["frames_fraction_of_raw"] == 1.0 and raw["cached_vs_decoded_psnr_db"] is None  # identical frames
    assert raw3["cached_vs_decoded_psnr_db"] is None  # the candidates too
    assert jpeg["frames_fraction_of_raw"] < 0.5 and jpeg["cached_vs_decoded_psnr_db"] > 30
    assert abs(yuv["frames_fraction_of_raw"] - 0.5) < 0.01 and yuv["cached_vs_decoded_psnr_db"] > 30
    # yuv420 items read the row pairs holding the rows: about half the raw item's bytes
    assert 0.4 < yuv3["bytes_read_per_item"] / raw3["bytes_read_per_item"] < 0.6
    assert raw["bytes_read_per_item"] < raw["raw_frames_bytes"]  # only the crop's rows of raw frames
    # the rows of 16 frames of the 48: K changes what is stored, not what is read
    assert raw3["bytes_read_per_item"] < raw3["raw_frames_bytes"] / 3 + 100_000
    # JPEG items read the files of their 16 frames, not the clip's whole chunk of 48
    assert 0.7 < jpeg3["bytes_read_per_item"] / jpeg["bytes_read_per_item"] < 1.4
    for r in (raw, raw3, yuv, yuv3):  # through a real loader worker: views in the worker, on the device, pixels shipped
        assert len(r["through_one_worker_ms"]) == 3 and all(v > 0 for v in r["through_one_worker_ms"].values())
    assert "through_one_worker_ms" not in jpeg
    # rows from a cold page cache, by one and by the pinning step's threads, and warm: entries of rows
    assert sorted(out["cold_reads"]) == sorted([e["entry"] for e in (raw, raw3, yuv, yuv3)])
    for r in out["cold_reads"].values():
        assert len(r["rows_read_ms_per_item"]) == 3 and all(v > 0 for v in r["rows_read_ms_per_item"].values())
    # raw items take their clip's small arrays from the entry's item index; JPEG items read the clip
    assert raw["item_index"] and raw3["item_index"] and yuv3["item_index"]
    assert not jpeg["item_index"] and not jpeg3["item_index"]
    for r in out["entries"]:  # the items a CPU run makes, and for JPEG those shipping the files, beside them
        assert r["item_ms_worker_views"] > 0
        assert (r["item_ms_device_decode"] is not None) == (r["frames_codec"] == "jpeg")
    assert 2.9 < raw3["frames_bytes_per_clip"] / raw["frames_bytes_per_clip"] < 3.1
    cands = out["candidates"]
    assert [(c["frames_codec"], c["k"]) for c in cands] == [("none", 3), ("yuv420", 3), ("jpeg", 3)]
    assert all(c["k_over_k1"] > 0 for c in cands)
    base = out["baselines"]
    try:
        import decord  # noqa: F401
    except ImportError:
        assert base["decord"].startswith("not measured")
    else:
        assert base["decord"]["256p"]["item_ms"] > 0 and base["decord"]["original"]["item_ms"] > 0
        assert all(row["over_decord_256p"] > 0 for row in base["cache"].values())
    assert isinstance(base.get("torchcodec"), (str, dict))
    printed = capsys.readouterr().out
    assert "items/s/core" in printed and "on the fly" in printed and "of raw uint8" in printed
    assert "K=3 item" in printed and "mmaction2" in printed
    # the same entry named by key, from its cache root (any dataset's entry, not only the demo's)
    again = loader_bench.main(["--entry", jpeg["entry"], "--cache-root", str(tmp_path / "cache"), "--crop", "64",
                               "--min-seconds", "0", "--decode-clips", "1", "--clips", "1", "--no-baselines"])
    assert [e["entry"] for e in again["entries"]] == [jpeg["entry"]] and again["entries"][0]["clips"] == 1


def test_loader_bench_options_parse_as_documented(loader_bench, tmp_path):
    with pytest.raises(SystemExit):  # no prefix matching: --workers is not --workers-list or anything else
        loader_bench.main(["--work", str(tmp_path)])
    ns = {}
    real = loader_bench.bench_train
    loader_bench.bench_train = lambda args, cfg: ns.update(vars(args)) or {}
    try:
        loader_bench.main(["--dataset", "demo", "--train", "--no-loader", "--arch", "ViT-B-16", "--workers", "8"])
    finally:
        loader_bench.bench_train = real
    assert ns["workers"] == 8 and ns["arch"] == "ViT-B-16" and ns["train"]
