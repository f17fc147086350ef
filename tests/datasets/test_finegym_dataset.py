import json
import pickle
import re

import numpy as np
import pytest

from _fixtures import make_video, touch, write_json, write_text
from pevl_testutils import make_timecoded_video, read_timecode
from stages.datasets import DATASET_ADAPTERS, DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.datasets.finegym import LABELS_DIR, parse_categories, parse_set_categories
from stages.extract.decode import decode_clip
from stages.settings import SettingsError

YT = "0LtLS9wROrk"
C1 = f"{YT}_E_002407_002435_A_0003_0005"  # event 2407..2435 s, action 3..5 s into it
C2 = f"{YT}_E_002407_002435_A_0010_0012"
C3 = "A-b_c_DEF12_E_000100_000130_A_0001_0004"  # youtube ids may contain "_" and "-"

ANN = {
    YT: {
        "E_002407_002435": {
            "event": 4,
            "timestamps": [[2407.1, 2435.2]],
            "segments": {
                "A_0003_0005": {"stages": 1, "timestamps": [[3.2, 5.4]]},
                "A_0010_0012": {"stages": 3, "timestamps": [[10.0, 10.5], [10.5, 11.0], [11.0, 12.3]]},
            },
        }
    },
    "A-b_c_DEF12": {"E_000100_000130": {"timestamps": [[100.6, 130.2]],
                                        "segments": {"A_0001_0004": {"timestamps": [[1.5, 4.25]]}}}},
}


def _splits(root, sub="annotations", train_name="gym99_train_element_v1.1.txt"):
    write_text(root / sub / train_name, f"{C1} 58\n{C3} 0\n")
    write_text(root / sub / "gym99_val_element.txt", f"{C2} 70\n")


def test_registered_names():
    assert "gym99" in DATASET_ADAPTERS and "gym288" in DATASET_ADAPTERS


def test_gym99_duplicate_text_58_70_resolved_with_real_file():
    raw = (LABELS_DIR / "gym99_categories.txt").read_text().splitlines()
    assert raw[58].endswith("(BB) salto backward tucked") and raw[70].endswith("(BB) salto backward tucked")
    texts, resolved = parse_categories(
        LABELS_DIR / "gym99_categories.txt", parse_set_categories(LABELS_DIR / "set_categories.txt")
    )
    assert len(texts) == 99 and len(set(texts)) == 99
    assert texts[58] == "salto backward tucked (balance beam, flight salto)"
    assert texts[70] == "salto backward tucked (balance beam, dismounts)"
    assert {r["clabel"] for r in resolved} == {58, 70}
    assert texts[0].endswith("(vault)")  # apparatus code written out


def test_gym288_all_texts_unique():
    texts, resolved = parse_categories(
        LABELS_DIR / "gym288_categories.txt", parse_set_categories(LABELS_DIR / "set_categories.txt")
    )
    assert len(texts) == 288 and len(set(texts)) == 288
    assert {r["clabel"] for r in resolved} == {180, 216, 181, 217, 185, 222}


def test_element_clips_layout(tmp_path):
    _splits(tmp_path)
    make_video(tmp_path / "subactions" / f"{C1}.mp4")
    touch(tmp_path / "subactions" / f"{C3}.mp4")
    idx = create_dataset("gym99", root=tmp_path).load()
    check_labels(idx)
    assert idx.num_classes == 99 and idx.coarse_type == "gymnastic"
    assert idx.split_counts() == {"train": 2, "val": 1}
    by = {c.clip_id: c for c in idx.clips}
    assert by[C1].video == str(tmp_path / "subactions" / f"{C1}.mp4") and by[C1].cut() == {}
    assert by[C3].extra["youtube_id"] == "A-b_c_DEF12"
    # C2 has no element clip: reported missing, not an error
    assert [c.clip_id for c in idx.missing()] == [C2]
    assert idx.source_files == [str(tmp_path / "annotations" / "gym99_train_element_v1.1.txt"),
                                str(tmp_path / "annotations" / "gym99_val_element.txt")]
    assert idx.meta["duplicates_resolved"][0]["clabel"] == 58


def test_event_and_full_videos_cut_by_timestamps(tmp_path):
    _splits(tmp_path, sub="")
    write_json(tmp_path / "annotations" / "finegym_annotation_info_v1.1.json", ANN)
    touch(tmp_path / "event_videos" / f"{YT}_E_002407_002435.mp4")
    touch(tmp_path / "videos" / "A-b_c_DEF12.mkv")
    idx = create_dataset("gym99", root=tmp_path).load()
    by = {c.clip_id: c for c in idx.clips}
    assert by[C1].video.endswith(f"{YT}_E_002407_002435.mp4")
    assert (by[C1].start_time, by[C1].end_time) == (3.2, 5.4)  # relative to the event video
    assert (by[C2].start_time, by[C2].end_time) == (10.0, 12.3)  # all stages of the segment
    assert by[C3].video.endswith("A-b_c_DEF12.mkv")
    # the event's exact start (100.6 s, its "timestamps"), not the truncated 100 of its id
    assert (by[C3].start_time, by[C3].end_time) == (102.1, 104.85)
    assert idx.missing() == []
    assert str(tmp_path / "annotations" / "finegym_annotation_info_v1.1.json") in idx.source_files
    assert idx.meta["layout"] == "published files" and idx.meta["video_sources"] == {
        "element": 0, "event": 2, "full": 1, "missing": 0}


def test_an_empty_cut_file_is_passed_over_for_the_event_it_can_be_cut_from(tmp_path):
    """mmaction2's trim scripts keep what a failed ffmpeg cut left (run at -loglevel panic): an
    empty subaction file stood for the clip though its event video could give it."""
    _splits(tmp_path, sub="")
    write_json(tmp_path / "annotations" / "finegym_annotation_info_v1.1.json", ANN)
    touch(tmp_path / "subactions" / f"{C1}.mp4", b"")  # the failed cut
    touch(tmp_path / "subactions" / f"{C3}.mp4", b"")  # nothing else to cut it from
    touch(tmp_path / "event_videos" / f"{YT}_E_002407_002435.mp4")
    idx = create_dataset("gym99", root=tmp_path).load()
    by = {c.clip_id: c for c in idx.clips}
    assert by[C1].video.endswith(f"{YT}_E_002407_002435.mp4") and (by[C1].start_time, by[C1].end_time) == (3.2, 5.4)
    assert by[C3].video is None and by[C3].extra["problem_kind"] == "empty file (0 bytes)"
    assert idx.meta["empty_cut_files_passed_over"] == 2
    assert idx.meta["missing_reasons"] == {"empty file (0 bytes)": 1}


def test_full_video_cut_starts_at_the_exact_event_start(tmp_path):
    """A video whose frame k shows k (10 fps): the event E_000002_000006 really starts at 2.7 s,
    its segment runs 0.5-1.5 s into it, so the clip is frames 32..41, not 25..34."""
    yt = "timecodeXYZ"
    cid = f"{yt}_E_000002_000006_A_0000_0001"
    write_text(tmp_path / "gym99_train_element_v1.1.txt", f"{cid} 5\n")
    write_text(tmp_path / "gym99_val_element.txt", "")
    write_json(tmp_path / "finegym_annotation_info_v1.1.json", {yt: {"E_000002_000006": {
        "event": 1, "timestamps": [[2.7, 6.3]],
        "segments": {"A_0000_0001": {"stages": 1, "timestamps": [[0.5, 1.5]]}}}}})
    make_timecoded_video(tmp_path / "videos" / f"{yt}.mp4", 80, fps=10)
    (clip,) = create_dataset("gym99", root=tmp_path).load().clips
    assert (clip.start_time, clip.end_time) == (3.2, 4.2) and clip.extra["source"] == "full"
    _, frames = decode_clip(clip.video, start_time=clip.start_time, end_time=clip.end_time)
    assert [read_timecode(f) for f in frames] == list(range(32, 42))


def test_event_start_that_disagrees_with_its_id_is_reported(tmp_path):
    _splits(tmp_path)
    bad = json.loads(json.dumps(ANN))
    bad[YT]["E_002407_002435"]["timestamps"] = [[2409.5, 2435.2]]  # not within second 2407
    write_json(tmp_path / "finegym_annotation_info_v1.1.json", bad)
    touch(tmp_path / "videos" / f"{YT}.mp4")
    idx = create_dataset("gym99", root=tmp_path).load()
    by = {c.clip_id: c for c in idx.clips}
    assert by[C1].video is None and "not within the second" in by[C1].extra["problem"]
    assert idx.meta["missing_reasons"]["event start disagrees with the event id"] == 2


def test_videos_and_events_without_annotation_json_when_every_subaction_exists(tmp_path):
    _splits(tmp_path)
    for c in (C1, C2, C3):
        touch(tmp_path / "subactions" / f"{c}.mp4")
    touch(tmp_path / "videos" / f"{YT}.mp4")
    touch(tmp_path / "events" / f"{YT}_E_002407_002435.mp4")
    idx = create_dataset("gym99", root=tmp_path).load()  # no error: nothing needs cutting
    assert idx.missing() == [] and idx.meta["video_sources"]["element"] == 3
    # a clip that would need the JSON to be cut is reported missing, with the reason
    (tmp_path / "subactions" / f"{C2}.mp4").unlink()
    idx = create_dataset("gym99", root=tmp_path).load()
    (miss,) = idx.missing()
    assert miss.clip_id == C2 and "annotation=PATH" in miss.extra["problem"]
    assert idx.meta["missing_reasons"] == {"no annotation JSON to cut the event or full video": 1}


C4 = f"{YT}_E_002681_002688_A_0000_0006"


def _mmaction2_root(root, event_json_only=False):
    """data/gym as mmaction2's tools/data/gym leaves it (annotation JSON renamed, _org split files,
    generated lists of the clips that exist)."""
    ann = root / "annotations"
    write_text(ann / "gym99_train_org.txt", f"{C1} 58\n{C3} 0\n{C4} 1\n")
    write_text(ann / "gym99_val_org.txt", f"{C2} 70\n")
    write_text(ann / "gym99_train.txt", f"{C1}.mp4 58")  # only clips that exist, no final newline
    write_text(ann / "gym99_val.txt", "")
    full = json.loads(json.dumps(ANN))
    if not event_json_only:
        write_json(ann / "annotation.json", full)
    write_json(ann / "event_annotation.json",
               {f"{yt}_{e}": v["segments"] for yt, evs in full.items() for e, v in evs.items()})
    touch(root / "subactions" / f"{C1}.mp4")
    touch(root / "events" / f"{YT}_E_002407_002435.mp4")  # C2's event: cut from it
    touch(root / "videos" / "A-b_c_DEF12.mp4")  # C3's full video: cut from it
    return root                                 # C4: nothing -> missing


def test_mmaction2_layout_works_as_it_lies(tmp_path):
    idx = create_dataset("gym99", root=_mmaction2_root(tmp_path)).load()
    assert idx.split_counts() == {"train": 3, "val": 1}  # the published splits, not the filtered lists
    by = {c.clip_id: c for c in idx.clips}
    assert by[C1].video.endswith(f"subactions/{C1}.mp4") and by[C1].cut() == {}
    assert by[C2].video.endswith(f"events/{YT}_E_002407_002435.mp4")
    assert (by[C2].start_time, by[C2].end_time) == (10.0, 12.3)
    assert by[C3].video.endswith("videos/A-b_c_DEF12.mp4") and by[C3].start_time == 102.1
    assert [c.clip_id for c in idx.missing()] == [C4]
    m = idx.meta
    assert m["layout"] == "mmaction2 tools/data/gym"
    assert m["split_files"] == {"train": "annotations/gym99_train_org.txt", "val": "annotations/gym99_val_org.txt"}
    assert "_org" in m["split_source"] and m["annotation_json"] == "annotations/annotation.json"
    assert m["video_sources"] == {"element": 1, "event": 1, "full": 1, "missing": 1}
    assert str(tmp_path / "annotations" / "annotation.json") in idx.source_files


def test_mmaction2_event_annotation_json_alone_cuts_event_videos(tmp_path):
    idx = create_dataset("gym99", root=_mmaction2_root(tmp_path, event_json_only=True)).load()
    by = {c.clip_id: c for c in idx.clips}
    assert (by[C2].start_time, by[C2].end_time) == (10.0, 12.3) and by[C2].extra["source"] == "event"
    assert by[C3].video is None and "annotation JSON" in by[C3].extra["problem"]  # a full video needs the event start
    assert idx.meta["event_annotation_json"] == "annotations/event_annotation.json"
    assert str(tmp_path / "annotations" / "event_annotation.json") in idx.source_files


def test_mmaction2_generated_lists_alone_are_used_with_a_note(tmp_path):
    _mmaction2_root(tmp_path)
    (tmp_path / "annotations" / "gym99_train_org.txt").unlink()
    (tmp_path / "annotations" / "gym99_val_org.txt").unlink()
    idx = create_dataset("gym99", root=tmp_path).load()
    assert [c.clip_id for c in idx.clips] == [C1]
    assert "only the clips" in idx.meta["split_source"]


def test_dataset_info_reports_the_mmaction2_layout(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "gym99", "--root",
                                   str(_mmaction2_root(tmp_path)), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["splits"] == {"train": 3, "val": 1} and info["missing_videos"] == 1
    assert info["meta"]["layout"] == "mmaction2 tools/data/gym"
    assert info["meta"]["split_files"]["train"] == "annotations/gym99_train_org.txt"


def test_missing_split_file_says_where(tmp_path):
    with pytest.raises(DatasetLayoutError, match="gym288_train_element_v1.1.txt"):
        create_dataset("gym288", root=tmp_path).load()


def test_bad_lines_rejected(tmp_path):
    _splits(tmp_path)
    write_text(tmp_path / "annotations" / "gym99_val_element.txt", "not_a_clip 3\n")
    with pytest.raises(DatasetLayoutError, match="clip id"):
        create_dataset("gym99", root=tmp_path).load()
    write_text(tmp_path / "annotations" / "gym99_val_element.txt", f"{C2} 99\n")
    with pytest.raises(DatasetLayoutError, match="outside"):
        create_dataset("gym99", root=tmp_path).load()


@pytest.mark.parametrize("name", ["gym99", "gym288"])
def test_published_v10_names_found(tmp_path, name):
    write_text(tmp_path / f"{name}_train_element_v1.0.txt", f"{C1} 0\n")
    write_text(tmp_path / f"{name}_val_element.txt", f"{C2} 1\n")
    idx = create_dataset(name, root=tmp_path).load()
    assert idx.meta["train_split_version"] == "1.0" and "v1.0" in idx.meta["note"]
    assert idx.meta["split_files"]["train"] == f"{name}_train_element_v1.0.txt"


def test_split_version_option(tmp_path):
    _splits(tmp_path)  # v1.1 train file
    write_text(tmp_path / "annotations" / "gym99_train_element_v1.0.txt", f"{C1} 58\n")
    assert len(create_dataset("gym99", root=tmp_path).load().select("train")) == 2  # v1.1 by default
    idx = create_dataset("gym99", root=tmp_path, split_version="1.0").load()
    assert idx.meta["train_split_version"] == "1.0" and len(idx.select("train")) == 1
    (tmp_path / "annotations" / "gym99_train_element_v1.1.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"split_version=1.1 asks for the v1.1 train split.*found only "
                                                 r"annotations/gym99_train_element_v1.0.txt \(v1.0\)"):
        create_dataset("gym99", root=tmp_path, split_version="1.1").load()
    with pytest.raises(SettingsError, match=r"split_version = '2' \(from -o\): expected one of '1.0', '1.1'"):
        create_dataset("gym99", root=tmp_path, split_version="2")


def test_split_version_without_its_file_names_the_file_it_skipped(tmp_path):
    """-o split_version=1.0 with only the v1.1 files: not "expected a train split file" as if none
    were there, but which file was found and skipped, and the two ways on."""
    _splits(tmp_path)  # v1.1 train file
    with pytest.raises(DatasetLayoutError) as e:
        create_dataset("gym99", root=tmp_path, split_version="1.0").load()
    msg = str(e.value)
    assert "found only annotations/gym99_train_element_v1.1.txt (v1.1), which split_version=1.0 skips" in msg
    assert "Add gym99_train_element_v1.0.txt" in msg and "drop -o split_version=1.0" in msg
    # an _org copy of v1.1 (known by its line count) is named the same way
    (tmp_path / "annotations" / "gym99_train_element_v1.1.txt").unlink()
    rows = "".join(f"vid{i:08d}abc_E_000001_000002_A_0000_0001 {i % 99}\n" for i in range(26320))
    write_text(tmp_path / "annotations" / "gym99_train_org.txt", rows)
    with pytest.raises(DatasetLayoutError, match=r"found only annotations/gym99_train_org.txt \(v1.1 by its 26320 lines\)"):
        create_dataset("gym99", root=tmp_path, split_version="1.0").load()


def test_org_file_version_from_its_line_count(tmp_path):
    rows = "".join(f"vid{i:08d}abc_E_000001_000002_A_0000_0001 {i % 99}\n" for i in range(20484))
    write_text(tmp_path / "annotations" / "gym99_train_org.txt", rows)
    write_text(tmp_path / "annotations" / "gym99_val_org.txt", f"{C2} 70\n")
    idx = create_dataset("gym99", root=tmp_path).load()
    assert idx.meta["train_split_version"] == "1.0"  # 20,484 lines: the published v1.0 file
    assert "val split has 1 lines" in idx.meta["note"]


def test_an_unversioned_train_file_is_judged_by_its_line_count_for_either_split_version(tmp_path):
    """A copy renamed to gym99_train_element.txt (no name the site ships): read for
    split_version=1.1 when it has v1.1's lines, skipped by name when it has v1.0's."""
    v11 = "".join(f"vid{i:08d}abc_E_000001_000002_A_0000_0001 {i % 99}\n" for i in range(26320))
    write_text(tmp_path / "annotations" / "gym99_train_element.txt", v11)
    write_text(tmp_path / "annotations" / "gym99_val_element.txt", f"{C2} 70\n")
    idx = create_dataset("gym99", root=tmp_path, split_version="1.1").load()
    assert idx.meta["train_split_version"] == "1.1" and len(idx.select("train")) == 26320
    write_text(tmp_path / "annotations" / "gym99_train_element.txt", v11.split("\n", 26320 - 20484)[-1])
    with pytest.raises(DatasetLayoutError, match=r"found only annotations/gym99_train_element.txt "
                                                 r"\(v1.0 by its 20484 lines\)"):
        create_dataset("gym99", root=tmp_path, split_version="1.1").load()
    assert create_dataset("gym99", root=tmp_path, split_version="1.0").load().meta["train_split_version"] == "1.0"


# -- person boxes ----------------------------------------------------------------------------------
def _write_boxes(path, mapping):
    if path.suffix == ".json":
        path.write_text(json.dumps(mapping))
    elif path.suffix == ".npz":
        np.savez(path, **mapping)
    else:
        path.write_bytes(pickle.dumps(mapping))
    return path


@pytest.mark.parametrize("fmt", ["json", "npz", "pkl"])
def test_person_boxes_formats(tmp_path, fmt):
    _splits(tmp_path)
    arr = np.array([[1, 2, 30, 40], [np.nan] * 4, [3, 4, 33, 44]], np.float32)
    value = [[1, 2, 30, 40], None, [3, 4, 33, 44]] if fmt == "json" else arr
    path = _write_boxes(tmp_path / f"boxes.{fmt}", {C1: value})
    ds = create_dataset("gym99", root=tmp_path, boxes=str(path))
    idx = ds.load()
    by = {c.clip_id: c for c in idx.clips}
    got = ds.person_boxes(by[C1])
    np.testing.assert_array_equal(got, arr)  # a frame without a box stays NaN: the chain fills it, with a note
    assert ds.person_boxes(by[C2]) is None
    assert idx.meta["boxes"]["clips_with_boxes"] == 1 and idx.meta["boxes"]["clips_without_boxes"] == 2
    assert str(path) in idx.source_files  # the boxes file's identity is in the entry key
    assert create_dataset("gym99", root=tmp_path).person_boxes(by[C1]) is None


def test_boxes_with_a_score_column_and_one_person_axis(tmp_path):
    _splits(tmp_path)
    t5 = np.array([[1, 2, 30, 40, 0.9], [5, 6, 35, 46, 0.0], [3, 4, 33, 44, 0.8]], np.float32)
    path = _write_boxes(tmp_path / "b.pkl", {
        C1: t5,  # (T, 5): boxes plus scores, not (T*5/4, 4) boxes
        "A-b_c_DEF12_000100_000130_0001_0004": t5[None, :, :4],  # (1, T, 4) in the skeleton-file key form
    })
    ds = create_dataset("gym99", root=tmp_path, boxes=str(path))
    idx = ds.load()
    by = {c.clip_id: c for c in idx.clips}
    got = ds.person_boxes(by[C1])
    assert got.shape == (3, 4)
    np.testing.assert_array_equal(got[[0, 2]], t5[[0, 2], :4])
    assert np.isnan(got[1]).all()  # score 0: no box in that frame
    np.testing.assert_array_equal(ds.person_boxes(by[C3]), t5[:, :4])
    assert idx.meta["boxes"]["forms"] == {"(T, 5)": 1, "(1, T, 4) squeezed": 1}


@pytest.mark.parametrize("value, what", [
    (np.arange(20, dtype=np.float32), "shape (20,)"),  # flat: would have become (5, 4) boxes
    (np.zeros((2, 3, 4), np.float32), "shape (2, 3, 4)"),  # two persons
    (np.zeros((3, 6), np.float32), "shape (3, 6)"),
    ([[1, 2, 3]], "rows of [3] numbers"),
    (np.array(["a", "b"]), "dtype <U1"),
])
def test_boxes_of_other_shapes_are_refused_naming_the_clip(tmp_path, value, what):
    _splits(tmp_path)
    path = _write_boxes(tmp_path / "b.pkl", {C1: value})
    with pytest.raises(DatasetLayoutError, match=rf"clip '{C1}': .*{re.escape(what)}"):
        create_dataset("gym99", root=tmp_path, boxes=str(path)).load()


def test_boxes_file_matching_no_clip_is_refused(tmp_path):
    _splits(tmp_path)
    path = _write_boxes(tmp_path / "b.json", {"frame_000001": [[1, 2, 3, 4]]})
    with pytest.raises(DatasetLayoutError, match="no key names a clip"):
        create_dataset("gym99", root=tmp_path, boxes=str(path)).load()
    path = _write_boxes(tmp_path / "b.json", {f"{YT}_E_000001_000002_A_0000_0001": [[1, 2, 3, 4]]})
    with pytest.raises(DatasetLayoutError, match="none of the 3 clips"):
        create_dataset("gym99", root=tmp_path, boxes=str(path)).load()


def test_boxes_pickle_goes_through_restricted_unpickler(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    _splits(tmp_path)
    (tmp_path / "boxes.pkl").write_bytes(pickle.dumps({C1: Evil()}))
    with pytest.raises(pickle.UnpicklingError, match=f"boxes file {tmp_path / 'boxes.pkl'}: refusing to load global"):
        create_dataset("gym99", root=tmp_path, boxes=str(tmp_path / "boxes.pkl")).load()
    assert not (tmp_path / "pwned").exists()
