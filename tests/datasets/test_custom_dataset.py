import pytest

from _fixtures import make_video, write_text
from stages.datasets import DatasetLayoutError, create_dataset
from stages.datasets.base import check_labels


def _root(tmp_path):
    write_text(tmp_path / "labels.txt", "pour tea\nopen the door\nwave hello\n\n")
    write_text(tmp_path / "train.csv", "path,label,start_frame,end_frame\n"
                                       "clips/a.mp4,0,,\n"
                                       "clips/a.mp4,2,0,5\n"
                                       "clips/b.mp4,open the door\n")
    write_text(tmp_path / "val.csv", "# held out\nclips/c.mp4,1,2,8\n")
    make_video(tmp_path / "clips" / "a.mp4")
    return tmp_path


def test_load(tmp_path):
    idx = create_dataset("custom", root=_root(tmp_path), coarse_type="kitchen").load()
    check_labels(idx)
    assert idx.classes == ["pour tea", "open the door", "wave hello"]
    assert idx.coarse_type == "kitchen"
    assert idx.split_counts() == {"train": 3, "val": 1}
    ids = [c.clip_id for c in idx.clips]
    assert ids == ["clips/a", "clips/a@0-5", "clips/b", "clips/c@2-8"]
    assert idx.clips[1].cut() == {"start_frame": 0, "end_frame": 5}
    assert idx.clips[2].label == 1 and idx.clips[0].cut() == {}
    assert idx.clips[0].video == str(tmp_path / "clips" / "a.mp4")
    assert [c.clip_id for c in idx.missing()] == ["clips/b", "clips/c@2-8"]
    assert idx.source_files == [str(tmp_path / f) for f in ("labels.txt", "train.csv", "val.csv")]


def test_optional_test_split_and_default_coarse(tmp_path):
    _root(tmp_path)
    write_text(tmp_path / "test.csv", "x.mp4,2\n")
    idx = create_dataset("custom", root=tmp_path).load()
    assert idx.coarse_type == "human" and idx.split_counts()["test"] == 1


@pytest.mark.parametrize("files,match", [
    ({"labels.txt": None}, r"labels.txt .*DIR/labels.txt, DIR/train.csv and DIR/val.csv"),  # the whole layout
    ({"val.csv": None}, r"val.csv with .*A custom dataset is DIR/labels.txt"),
    ({"val.csv": "label,path\n1,c.mp4\n"}, r"val.csv:1: the header puts 'label' first"),
    ({"labels.txt": "a\n\nb\n"}, "empty label"),
    ({"labels.txt": "a\na\n"}, "unique"),
    ({"val.csv": "c.mp4,3\n"}, "outside"),
    ({"val.csv": "c.mp4,nope\n"}, "neither"),
    ({"val.csv": "c.mp4,Wave Hello\n"}, r"neither .*; did you mean 'wave hello'\?"),
    ({"val.csv": "c.mp4,1,4\n"}, "both"),
    ({"val.csv": "c.mp4,1,5,5\n"}, "start_frame < end_frame"),
    ({"val.csv": "clips/a.mp4,1\n"}, "already listed"),
])
def test_errors(tmp_path, files, match):
    _root(tmp_path)
    for name, text in files.items():
        if text is None:
            (tmp_path / name).unlink()
        else:
            write_text(tmp_path / name, text)
    with pytest.raises(DatasetLayoutError, match=match):
        create_dataset("custom", root=tmp_path).load()


@pytest.mark.parametrize("name", ["custom", "gym99", "diving48", "haa500", "toyota_smarthome"])
def test_root_that_is_not_a_folder_is_refused_up_front(tmp_path, name):

    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        create_dataset(name, root=tmp_path / "nowhere")
