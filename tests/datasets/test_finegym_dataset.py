import json
import pickle

import numpy as np
import pytest

from _fixtures import make_video, touch, write_json, write_text
from stages.datasets import DATASETS, DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.datasets.finegym import LABELS_DIR, parse_categories, parse_set_categories

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
    "A-b_c_DEF12": {"E_000100_000130": {"segments": {"A_0001_0004": {"timestamps": [[1.5, 4.25]]}}}},
}


def _splits(root, sub="annotations", train_name="gym99_train_element_v1.1.txt"):
    write_text(root / sub / train_name, f"{C1} 58\n{C3} 0\n")
    write_text(root / sub / "gym99_val_element.txt", f"{C2} 70\n")


def test_registered_names():
    assert "gym99" in DATASETS and "gym288" in DATASETS


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
    assert by[C3].start_time == 101.5 and by[C3].end_time == 104.25  # event start + segment
    assert idx.missing() == []
    assert str(tmp_path / "annotations" / "finegym_annotation_info_v1.1.json") in idx.source_files


def test_full_videos_without_annotation_json_is_an_error(tmp_path):
    _splits(tmp_path)
    touch(tmp_path / "videos" / f"{YT}.mp4")
    with pytest.raises(DatasetLayoutError, match="annotation JSON"):
        create_dataset("gym99", root=tmp_path).load()


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


def test_v10_train_file_accepted_and_noted(tmp_path):
    _splits(tmp_path, train_name="gym99_train_element.txt")
    idx = create_dataset("gym99", root=tmp_path).load()
    assert "v1.0" in idx.meta["note"]


@pytest.mark.parametrize("fmt", ["json", "npz", "pkl"])
def test_person_boxes_formats(tmp_path, fmt):
    _splits(tmp_path)
    boxes = [[1, 2, 30, 40], None, [3, 4, 33, 44]]
    arr = np.array([[1, 2, 30, 40], [np.nan] * 4, [3, 4, 33, 44]], np.float32)
    path = tmp_path / f"boxes.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({C1: boxes}))
    elif fmt == "npz":
        np.savez(path, **{C1: arr})
    else:
        path.write_bytes(pickle.dumps({C1: arr}))
    ds = create_dataset("gym99", root=tmp_path, boxes=str(path))
    idx = ds.load()
    by = {c.clip_id: c for c in idx.clips}
    got = ds.person_boxes(by[C1])
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got[1], [1, 2, 30, 40])  # hole filled from the nearest frame
    assert ds.person_boxes(by[C2]) is None
    assert create_dataset("gym99", root=tmp_path).person_boxes(by[C1]) is None


def test_boxes_pickle_goes_through_restricted_unpickler(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    _splits(tmp_path)
    (tmp_path / "boxes.pkl").write_bytes(pickle.dumps({C1: Evil()}))
    ds = create_dataset("gym99", root=tmp_path, boxes=str(tmp_path / "boxes.pkl"))
    idx = ds.load()
    with pytest.raises(pickle.UnpicklingError):
        ds.person_boxes(idx.clips[0])
    assert not (tmp_path / "pwned").exists()
