"""File names that are not UTF-8 (a latin-1 ``café``) and text files with a byte that is not
(issue 19): the name keeps its bytes, a name that cannot be represented is reported with its
folder and skipped, a bad byte in a text file names the file and line; never the whole plan."""
import json
import os
import pickle

import numpy as np
import pytest

from _fixtures import touch
from cache.layout import clip_uid
from pevl_testutils import make_video
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.names import readable_name

LATIN1_CAFE = b"caf\xe9"  # "café" as latin-1 wrote it: not UTF-8


def _bytes_path(folder, name: bytes):
    return os.path.join(os.fsencode(str(folder)), name)


def _custom(root, csv_rows: bytes, labels=b"a\nb\n"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_bytes(labels)
    (root / "train.csv").write_bytes(b"path,label\n" + csv_rows)
    (root / "val.csv").write_bytes(b"path,label\n")
    return root


def test_readable_name():
    name = os.fsdecode(LATIN1_CAFE + b".mp4")  # what os.listdir hands over: lone surrogates
    assert readable_name(name) == "caf\\xe9.mp4" and readable_name("café") == "café"


def test_custom_latin1_video_named_in_a_latin1_csv_is_found_and_extracted(tmp_path):
    """The whole way: listed, found, planned, decoded by ffmpeg, posed from a skeleton file whose
    frame_dir pyskl took from the same bytes, written to the cache."""
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    os.makedirs(_bytes_path(root, b"v"))
    make_video(tmp_path / "tmp.mp4", frames=4)
    os.rename(tmp_path / "tmp.mp4", _bytes_path(root / "v", LATIN1_CAFE + b".mp4"))
    make_video(root / "v" / "café.mp4", frames=4)  # the UTF-8 spelling: another file, another clip
    _custom(root, b"v/" + LATIN1_CAFE + b".mp4,0\n" + "v/café.mp4,1\n".encode())
    idx = create_dataset("custom", root=root).load()
    assert [c.clip_id for c in idx.clips] == ["v/caf\\xe9", "v/café"]
    assert idx.missing() == []
    kp = np.tile(np.float32([[10, 20]]), (1, 4, 17, 1))
    anns = [{"frame_dir": os.path.splitext(os.path.basename(os.fsdecode(n)))[0], "img_shape": (48, 64),
             "keypoint": kp, "keypoint_score": np.ones((1, 4, 17), np.float32)}
            for n in (LATIN1_CAFE + b".mp4", "café.mp4".encode())]
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps(anns))
    rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                                     pose_source=f"pkl:{tmp_path / 'poses.pkl'}",
                                     settings=dict(num_frames=2, short_side=48)))
    assert rep.complete and not rep.failed_now, rep.entry.failures()
    plan = json.loads((rep.entry.path / "plan.json").read_text())
    assert [c["clip_id"] for c in plan["clips"]] == ["v/caf\\xe9", "v/café"]


def test_custom_latin1_byte_in_a_label_field_names_the_file_and_line(tmp_path):
    root = _custom(tmp_path, b"x.mp4,0\ny.mp4," + LATIN1_CAFE + b"\n")
    with pytest.raises(DatasetLayoutError, match=r"train.csv:3: the label field is not UTF-8 text"):
        create_dataset("custom", root=root).load()
    root = _custom(tmp_path / "b", b"x.mp4,0\n", labels=b"a\n" + LATIN1_CAFE + b"\n")
    with pytest.raises(DatasetLayoutError, match=r"labels.txt:2: not UTF-8 text \(byte 0xe9 at column 4\)"):
        create_dataset("custom", root=root).load()


def _haa(root):
    for i in range(1, 4):
        touch(root / "video" / "archery" / f"archery_{i:03d}.mp4")
        touch(root / "video" / "abseiling" / f"abseiling_{i:03d}.mp4")
    os.makedirs(_bytes_path(root / "video", LATIN1_CAFE))  # a class folder whose name is no text
    with open(_bytes_path(root / "video", LATIN1_CAFE + b"/" + LATIN1_CAFE + b"_001.mp4"), "wb"):
        pass
    return root


def test_haa500_latin1_class_folder_skipped_and_reported(tmp_path):
    from stages.extract.plan import ExtractOptions, open_or_create, plan_entry

    root = _haa(tmp_path / "haa")
    idx = create_dataset("haa500", root=root).load()
    assert idx.classes == ["abseiling", "archery"]  # the latin-1 class folder cannot be a label text
    assert idx.missing() == [] and len(idx.clips) == 6
    (note,) = idx.meta["skipped_names"]
    assert note.startswith(f"{root / 'video'}/caf\\xe9: the name is not UTF-8") and "skipped" in note
    # the rest is planned and the entry created (clip uids, plan.json, the manifest's meta)
    pkl = tmp_path / "none.pkl"
    pkl.write_bytes(pickle.dumps([{"frame_dir": "zzz", "img_shape": (4, 4), "keypoint": np.zeros((1, 1, 17, 2))}]))
    p = plan_entry(ExtractOptions(dataset="haa500", root=str(root), cache_root=str(tmp_path / "cache"),
                                  pose_source=f"pkl:{pkl}", missing_poses="fail"))
    entry = open_or_create(p)
    assert len(json.loads((entry.path / "plan.json").read_text())["clips"]) == 6
    assert "skipped_names" in json.loads((entry.path / "manifest.json").read_text())["dataset_meta"]


def test_haa500_latin1_video_in_a_class_folder_is_refused_by_its_readable_name(tmp_path):
    """HAA500's split comes from the number in <class_name>_<nnn>: a video named otherwise has no
    place in it, and the error writes a name that is not UTF-8 with its bytes as \\xNN."""
    root = _haa(tmp_path / "haa")
    with open(_bytes_path(root / "video" / "archery", LATIN1_CAFE + b"_004.mp4"), "wb"):
        pass
    with pytest.raises(DatasetLayoutError, match=r"archery/caf\\xe9_004.mp4: expected <class_name>_<nnn>") as e:
        create_dataset("haa500", root=root).load()
    str(e.value).encode("utf-8")  # printable and loggable


def test_dataset_info_prints_a_dataset_with_latin1_names(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    root = _haa(tmp_path / "haa")
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "haa500", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "skipped names" in res.output
    res = CliRunner().invoke(app, ["dataset", "info", "--dataset", "haa500", "--root", str(root), "--json"])
    assert res.exit_code == 0 and "caf\\xe9" in json.loads(res.stdout)["meta"]["skipped_names"][0]


def test_toyota_latin1_file_skipped_and_reported(tmp_path):
    touch(tmp_path / "mp4" / "Drink.Fromcup_p03_r00_v01_c01.mp4")
    with open(_bytes_path(tmp_path / "mp4", b"Drink.Fromcup_p03_r00_v01_c02" + b"\xe9.mp4"), "wb"):
        pass
    idx = create_dataset("toyota_smarthome", root=tmp_path).load()
    assert [c.clip_id for c in idx.clips] == ["Drink.Fromcup_p03_r00_v01_c01"]
    assert "not UTF-8" in idx.meta["skipped_names"][0]


def test_clip_uid_of_any_id():
    assert clip_uid("v/caf\\xe9") != clip_uid("v/café")
    assert clip_uid(os.fsdecode(LATIN1_CAFE)).startswith("caf--")  # lone surrogates hash by their bytes
    assert clip_uid("abc") == "abc"


def test_a_bad_byte_in_a_finegym_split_file_names_the_file_and_line(tmp_path):
    (tmp_path / "gym99_train_element_v1.1.txt").write_text("0LtLS9wROrk_E_002407_002435_A_0003_0005 3\n")
    (tmp_path / "gym99_val_element.txt").write_bytes(b"0LtLS9wROrk_E_002407_002435_A_0006_0008 4\nx\xe9 1\n")
    with pytest.raises(DatasetLayoutError, match=r"gym99_val_element.txt:2: not UTF-8 text \(byte 0xe9 at column 2\)"):
        create_dataset("gym99", root=tmp_path).load()
