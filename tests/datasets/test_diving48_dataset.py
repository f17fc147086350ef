import pytest

from _fixtures import touch, write_json
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels
from stages.settings import SettingsError
from stages.datasets.diving48 import LABEL_MAP, readable_composition

TRAIN = [
    {"vid_name": "-mmq0PT-u8k_00155", "label": 0, "start_frame": 0, "end_frame": 82},
    {"vid_name": "-mmq0PT-u8k_00156", "label": 47, "start_frame": 3, "end_frame": 60},
]
TEST = [{"vid_name": "0a2Ci3H3S5g_00001", "label": 20, "start_frame": 0, "end_frame": 40}]


def _root(tmp_path, vocab=True, sub=""):
    write_json(tmp_path / sub / "Diving48_V2_train.json", TRAIN)
    write_json(tmp_path / sub / "Diving48_V2_test.json", TEST)
    if vocab:
        entries = [l.split("+") for l in LABEL_MAP.read_text().split()]
        write_json(tmp_path / sub / "Diving48_vocab.json", entries)
    touch(tmp_path / "rgb" / "-mmq0PT-u8k_00155.mp4")
    return tmp_path


def test_readable_text():
    assert readable_composition(["Back", "15som", "05Twis", "FREE"]) == (
        "back takeoff, 1.5 somersaults, 0.5 twist, free position"
    )
    assert readable_composition("Forward+Dive+NoTwis+STR") == (
        "forward takeoff, dive, no twist, straight position"
    )
    assert readable_composition("Forward+1som+NoTwis+PIKE").startswith("forward takeoff, 1 somersault,")


@pytest.mark.parametrize("vocab", [True, False])
def test_load(tmp_path, vocab):
    idx = create_dataset("diving48", root=_root(tmp_path, vocab=vocab)).load()
    check_labels(idx)
    assert idx.num_classes == 48 and len(set(idx.classes)) == 48
    assert idx.coarse_type == "diving"
    assert idx.classes[0] == "back takeoff, 1.5 somersaults, 0.5 twist, free position"
    assert idx.split_counts() == {"train": 2, "test": 1}
    c = idx.clips[1]
    assert c.video == str(tmp_path / "rgb" / "-mmq0PT-u8k_00156.mp4")
    assert c.cut() == {} and c.extra == {"start_frame": 3, "end_frame": 60}
    assert [m.clip_id for m in idx.missing()] == ["-mmq0PT-u8k_00156", "0a2Ci3H3S5g_00001"]
    assert len(idx.source_files) == (3 if vocab else 2)
    assert ("label_file_sha256" in idx.meta) is (not vocab)


def test_frame_range_option_and_annotations_folder(tmp_path):
    idx = create_dataset("diving48", root=_root(tmp_path, sub="annotations"), frame_range=True).load()
    assert idx.clips[1].cut() == {"start_frame": 3, "end_frame": 60}


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="Diving48_V2_train.json"):
        create_dataset("diving48", root=tmp_path).load()
    _root(tmp_path)
    write_json(tmp_path / "Diving48_V2_test.json", [{"vid_name": "x", "label": 48}])
    with pytest.raises(DatasetLayoutError, match="outside"):
        create_dataset("diving48", root=tmp_path).load()
    write_json(tmp_path / "Diving48_vocab.json", [["Back", "15som"]])
    with pytest.raises(DatasetLayoutError, match="takeoff"):
        create_dataset("diving48", root=tmp_path).load()


def _v1_root(tmp_path):
    write_json(tmp_path / "Diving48_train.json", TRAIN)
    write_json(tmp_path / "Diving48_test.json", TEST)
    return tmp_path


def test_a_copy_with_only_the_v1_files_is_refused_naming_them_and_the_option(tmp_path):
    """V1 relabels 39% of the clips V2 lists: never read in V2's place without being asked."""
    root = _v1_root(tmp_path)
    with pytest.raises(DatasetLayoutError) as e:
        create_dataset("diving48", root=root).load()
    msg = str(e.value)
    assert str(root / "Diving48_train.json") in msg and "V1 annotation file" in msg
    assert "Diving48_V2_train.json" in msg and "-o annotations=V1" in msg and "6,639 of the 16,997" in msg


def test_v1_on_purpose_reads_both_splits_from_v1_and_says_so(tmp_path):
    root = _v1_root(tmp_path)
    write_json(tmp_path / "Diving48_V2_test.json", [{"vid_name": "other", "label": 3}])  # never mixed in
    idx = create_dataset("diving48", root=root, annotations="V1").load()
    assert idx.meta["annotation_version"] == {"train": "V1", "test": "V1"}
    assert [c.clip_id for c in idx.clips] == [r["vid_name"] for r in TRAIN + TEST]
    assert idx.source_files[:2] == [str(root / "Diving48_train.json"), str(root / "Diving48_test.json")]


def test_v1_asked_where_only_v2_is_there_is_refused(tmp_path):
    with pytest.raises(DatasetLayoutError, match="only the V2 file .*drop -o annotations=V1"):
        create_dataset("diving48", root=_root(tmp_path), annotations="V1").load()
    with pytest.raises(SettingsError, match=r"annotations = 'v3' .*expected one of 'V2', 'V1'"):
        create_dataset("diving48", root=_root(tmp_path), annotations="v3").load()


def test_v2_is_read_beside_v1_files(tmp_path):
    root = _root(_v1_root(tmp_path))
    idx = create_dataset("diving48", root=root).load()
    assert idx.meta["annotation_version"] == {"train": "V2", "test": "V2"}
    assert idx.source_files[:2] == [str(root / "Diving48_V2_train.json"), str(root / "Diving48_V2_test.json")]
