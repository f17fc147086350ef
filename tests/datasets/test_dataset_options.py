"""Adapter options (-o KEY=VALUE) are typed: converted by their declared type or refused by name."""
import json

import pytest
from typer.testing import CliRunner

from _fixtures import touch, write_json
from pipeline.cli import app
from stages.datasets import create_dataset
from stages.settings import SettingsError


def _diving48(root):
    write_json(root / "Diving48_V2_train.json", [{"vid_name": "a_00001", "label": 0, "start_frame": 3, "end_frame": 9}])
    write_json(root / "Diving48_V2_test.json", [{"vid_name": "b_00001", "label": 1, "start_frame": 0, "end_frame": 5}])
    touch(root / "rgb" / "a_00001.mp4")
    return root


@pytest.mark.parametrize("text, on", [("false", False), ("0", False), ("no", False), ("true", True), ("1", True)])
def test_a_bool_option_means_what_it_says(tmp_path, text, on):
    idx = create_dataset("diving48", root=_diving48(tmp_path), frame_range=text).load()
    assert idx.meta["frame_range_applied"] is on
    assert idx.clips[0].cut() == ({"start_frame": 3, "end_frame": 9} if on else {})


def test_dataset_info_prints_the_frame_range_as_set(tmp_path):
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "diving48", "--root", str(_diving48(tmp_path)),
                                   "-o", "frame_range=false", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["meta"]["frame_range_applied"] is False


def test_a_pair_option_is_a_pair(tmp_path):
    touch(tmp_path / "mp4" / "Walk_p03_r00_v01_c01.mp4")
    ds = create_dataset("toyota_smarthome", root=tmp_path, frame_size="480,640")
    assert ds.options.frame_size == (480, 640)
    assert create_dataset("toyota_smarthome", root=tmp_path, frame_size=(720, 1280)).options.frame_size == (720, 1280)
    with pytest.raises(SettingsError, match=r"frame_size = '480' \(from -o\): expected int,int"):
        create_dataset("toyota_smarthome", root=tmp_path, frame_size="480")


def test_a_misspelt_option_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(SettingsError, match=r"diving48: unknown dataset option frame_rnge \(from -o\); "
                                            r"did you mean frame_range\?"):
        create_dataset("diving48", root=_diving48(tmp_path), frame_rnge="1")
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "haa500", "--root", str(tmp_path),
                                   "-o", "nonsense=1"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2
    assert "unknown dataset option nonsense" in out and "annotation_dir, train_per_class, val_per_class" in out


def test_options_are_listed_with_types_and_defaults():
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "toyota_smarthome", "--options", "--json"])
    assert res.exit_code == 0, res.output
    groups = json.loads(res.stdout)
    opts = {o["key"]: o for o in groups["dataset toyota_smarthome (-o KEY=VALUE)"]}
    assert opts["frame_size"]["type"] == "int,int" and opts["frame_size"]["default"] == "480,640"
    assert opts["protocol"]["type"] == "one of 'cs', 'cv1', 'cv2'" and opts["protocol"]["help"]
    hrnet = CliRunner().invoke(app, ["dataset", "info", "--dataset", "gym99", "--options", "--json"])
    pose = {o["key"]: o for o in json.loads(hrnet.stdout)["pose source hrnet (--pose-option KEY=VALUE)"]}
    assert pose["flip_test"]["default"] == "true" and pose["batch_size"]["in_entry_key"] is False


def test_pose_options_belong_to_their_source(tmp_path):
    """An HRNet option given to a source that does not take it is an error, not silence."""
    from stages.extract.plan import ExtractOptions, plan_entry

    touch(tmp_path / "mp4" / "Walk_p03_r00_v01_c01.mp4")
    with pytest.raises(SettingsError, match="pose source 'dataset': unknown pose source option checkpoint"):
        plan_entry(ExtractOptions(dataset="toyota_smarthome", root=str(tmp_path), cache_root=str(tmp_path / "c"),
                                  pose_options={"checkpoint": "none"}))
