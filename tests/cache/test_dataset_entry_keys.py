"""Entry keys of real-dataset layouts: untouched datasets keep their keys; fixes that change what an
entry holds (FineGym full-video cuts, Toyota-Smarthome protocols) give new ones.

The pinned values are the sources hashes (clip list, cuts, annotation files, classes; not the store
format version) that the code before these fixes (commit 74d7a1d) computed for exactly these
inputs: files of pinned sizes and modification times.
"""
import json
import os

import pytest

from stages.extract.plan import ExtractOptions, plan_entry

MTIME = 1_700_000_000_000_000_000
YT = "0LtLS9wROrk"


def _w(p, data):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())


def finegym_full(root):
    ann = {YT: {"E_002407_002435": {"event": 4, "timestamps": [[2407.32, 2435.28]], "segments": {
        "A_0003_0005": {"stages": 1, "timestamps": [[3.45, 5.64]]},
        "A_0006_0008": {"stages": 1, "timestamps": [[6.1, 8.2]]}}}}}
    _w(root / "finegym_annotation_info_v1.1.json", json.dumps(ann, sort_keys=True))
    _w(root / "gym99_train_element_v1.1.txt", f"{YT}_E_002407_002435_A_0003_0005 78\n")
    _w(root / "gym99_val_element.txt", f"{YT}_E_002407_002435_A_0006_0008 12\n")
    _w(root / "videos" / f"{YT}.mp4", b"\0" * 1000)


def finegym_elements(root):
    _w(root / "annotations" / "gym99_train_element_v1.1.txt", f"{YT}_E_002407_002435_A_0003_0005 78\n")
    _w(root / "annotations" / "gym99_val_element.txt", f"{YT}_E_002407_002435_A_0006_0008 12\n")
    _w(root / "subactions" / f"{YT}_E_002407_002435_A_0003_0005.mp4", b"\0" * 1000)
    _w(root / "subactions" / f"{YT}_E_002407_002435_A_0006_0008.mp4", b"\0" * 1200)


def toyota(root):
    for i, n in enumerate(["Drink.Fromcup_p03_r00_v01_c01", "Drink.Fromcup_p02_r01_v02_c02", "Walk_p19_r00_v01_c05",
                           "Walk_p25_r00_v01_c06", "Walk_p04_r00_v01_c07", "Cook.Cleandishes_p19_r00_v01_c03"]):
        _w(root / "mp4" / f"{n}.mp4", b"\0" * (100 + i))


def haa500(root):
    for c in ("abseiling", "playing_violin"):
        for i in range(20):
            _w(root / "video" / c / f"{c}_{i:03d}.mp4", b"\0" * (100 + i))


def diving48(root):
    rows = [{"vid_name": f"v{i}", "label": i, "start_frame": 0, "end_frame": 10} for i in range(3)]
    _w(root / "Diving48_V2_train.json", json.dumps(rows[:2]))
    _w(root / "Diving48_V2_test.json", json.dumps(rows[2:]))
    for i in range(3):
        _w(root / "rgb" / f"v{i}.mp4", b"\0" * (100 + i))


# (layout, dataset, options, sources hash before the fixes, whether it must still be the same)
CASES = [
    (finegym_full, "gym99", {}, "66438a3cbaa0f749", False),  # cut at the exact event start now
    (finegym_elements, "gym99", {}, "055125b58fb4c243", True),
    (toyota, "toyota_smarthome", {}, "3a598ed8a54ff35d", False),  # CS gained its validation split
    (toyota, "toyota_smarthome", {"protocol": "cv1"}, "64e6273c86df19e9", False),  # val camera 5, not 6
    (toyota, "toyota_smarthome", {"protocol": "cv2"}, "e2b00a70ead1134a", False),  # camera 7 trains
    (haa500, "haa500", {}, "9ba7d5e5acde8529", True),
    (diving48, "diving48", {}, "81ef932ac44e504f", True),
]


@pytest.mark.parametrize("build, dataset, options, before, same", CASES,
                         ids=[f"{c[0].__name__}-{c[2].get('protocol', '')}" for c in CASES])
def test_keys_change_exactly_where_the_entry_changes(tmp_path, build, dataset, options, before, same):
    root = tmp_path / "data"
    build(root)
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), ns=(MTIME, MTIME))
    # Toyota's own poses take no option; HRNet (the others) runs with random weights
    pose = {} if dataset == "toyota_smarthome" else {"checkpoint": "none"}
    p = plan_entry(ExtractOptions(dataset=dataset, root=str(root), cache_root=str(tmp_path / "cache"),
                                  pose_options=pose, dataset_options=options, missing_poses="fail"))
    assert (p.sources_hash == before) is same


@pytest.mark.parametrize("build, cut_in_time", [(finegym_full, True), (finegym_elements, False)])
def test_time_cut_clips_record_how_their_cut_is_read(tmp_path, build, cut_in_time):
    """A time cut's rule is in its clip's source (so in the entry key): entries cut by ffmpeg's -ss/-to
    pair (a frame late at the end) are not resumed with clips cut by frame times; whole-file clips'
    sources, and so their keys, do not change."""
    from stages.extract.frame_seek import TIME_CUT_RULE

    build(tmp_path / "data")
    p = plan_entry(ExtractOptions(dataset="gym99", root=str(tmp_path / "data"), cache_root=str(tmp_path / "cache"),
                                  pose_options={"checkpoint": "none"}, missing_poses="fail"))
    assert [s.get("time_cut_rule") for s in p.sources if "clip" in s] == [TIME_CUT_RULE if cut_in_time else None] * 2


@pytest.mark.parametrize("dataset, request_hash", [
    ("custom", "b17619abd0f47ae0"), ("haa500", "849304cc01cb2455"), ("toyota_smarthome", "cc49f4cde70ae43c"),
    ("demo", "c180ce7f8714697e")])
def test_request_hashes_of_unchanged_inputs_stay(dataset, request_hash):
    """Stage two finds an entry by its request's hash: an adapter option added to the request
    (custom's label_field, before in_key=False) left every entry made before it unfound."""
    from stages.extract.request import entry_request

    assert entry_request(dataset).hash == request_hash
