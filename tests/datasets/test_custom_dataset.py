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


def test_numbers_as_label_texts(tmp_path):
    """labels.txt of classes named by numbers: before 2026-12-06 a CSV's "0" was read as index 0,
    the class whose text is "2", without a word."""
    _root(tmp_path)
    write_text(tmp_path / "labels.txt", "2\n1\n0\n")
    write_text(tmp_path / "train.csv", "a.mp4,2\nb.mp4,1\n")
    write_text(tmp_path / "val.csv", "c.mp4,0\n")
    with pytest.raises(DatasetLayoutError, match=r"train.csv:1: label '2' is both class index 2 \('0'\) and the text "
                                                 r"of labels.txt line 1 \(class 0\); .*-o label_field=index"):
        create_dataset("custom", root=tmp_path).load()
    as_text = create_dataset("custom", root=tmp_path, label_field="text").load()
    assert [c.label for c in as_text.clips] == [0, 1, 2]
    as_index = create_dataset("custom", root=tmp_path, label_field="index").load()
    assert [c.label for c in as_index.clips] == [2, 1, 0]
    # texts with leading zeros are no index: read as texts without a choice to make
    write_text(tmp_path / "labels.txt", "007\n003\n")
    write_text(tmp_path / "train.csv", "a.mp4,007\nb.mp4,1\n")
    write_text(tmp_path / "val.csv", "c.mp4,003\n")
    idx = create_dataset("custom", root=tmp_path).load()
    assert [c.label for c in idx.clips] == [0, 1, 1]
    with pytest.raises(DatasetLayoutError, match=r"label '1' is not a line of labels.txt \(label_field=text\)"):
        create_dataset("custom", root=tmp_path, label_field="text").load()


def test_absolute_paths_sharing_a_base_name(tmp_path):
    """A folder per class of numbered files, listed by absolute paths: the ids were the base names,
    so the second 0001 was refused as listed already."""
    _root(tmp_path)
    write_text(tmp_path / "train.csv", f"{tmp_path}/wave/0001.mp4,0\n{tmp_path}/jump/0001.mp4,1\n"
                                       f"/elsewhere/jump/0001.mp4,1\n{tmp_path}/jump/0002.mp4,1\n")
    idx = create_dataset("custom", root=tmp_path).load()
    # a base name no other absolute path shares keeps its id (the entries made so far keep their key)
    assert [c.clip_id for c in idx.clips if c.split == "train"] == [
        "wave/0001", "jump/0001", "elsewhere/jump/0001", "0002"]
    write_text(tmp_path / "val.csv", f"{tmp_path}/jump/0002.mp4,1\n")
    with pytest.raises(DatasetLayoutError, match=r"val.csv:1: clip '0002' already listed at .*train.csv:4"):
        create_dataset("custom", root=tmp_path).load()


def test_ucf101_classind_labels_and_empty_split_files(tmp_path, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="stages.datasets.custom")  # (tests/model sets the root logger to ERROR)
    _root(tmp_path)
    write_text(tmp_path / "labels.txt", "1 ApplyEyeMakeup\n2 ApplyLipstick\n3 Archery\n")
    with pytest.raises(DatasetLayoutError, match=r"labels.txt: every line is a running number and a name "
                                                 r"\('1 ApplyEyeMakeup'\), as UCF101's classInd.txt"):
        create_dataset("custom", root=tmp_path).load()
    write_text(tmp_path / "labels.txt", "3 pigs\n7 dwarfs\n")  # numbers in names, not a running count: texts
    write_text(tmp_path / "train.csv", "a.mp4,3 pigs\n")
    write_text(tmp_path / "val.csv", "path,label\n")
    idx = create_dataset("custom", root=tmp_path).load()
    assert idx.classes == ["3 pigs", "7 dwarfs"] and idx.split_counts() == {"train": 1}
    assert idx.meta["split_files_without_clips"] == ["val.csv"]
    assert "val.csv lists no clip: the val split is empty" in caplog.text


@pytest.mark.parametrize("header", ["path,label,start_time,end_time", "video,label,start_sec,end_sec",
                                    "path,label,subject,take", "path,label,start_frame"])
def test_a_header_naming_other_columns_than_the_frame_cut_is_refused(tmp_path, header):
    """Columns 3 and 4 were taken as frame numbers whatever the header called them: a cut in
    seconds, 3 to 7 of a 10 s video, became frames 3-7, with only a note of 4 frames < 48."""
    _root(tmp_path)
    write_text(tmp_path / "val.csv", f"{header}\nclips/c.mp4,1,3,7\n")
    with pytest.raises(DatasetLayoutError, match=r"val.csv:1: header columns .* after 'path,label': this reader takes "
                                                 r"'start_frame,end_frame' there .*A cut in seconds is not read"):
        create_dataset("custom", root=tmp_path).load()
    write_text(tmp_path / "val.csv", "path,Label,Start_Frame,End_Frame\nclips/c.mp4,1,3,7\n")
    assert create_dataset("custom", root=tmp_path).load().clips[-1].cut() == {"start_frame": 3, "end_frame": 7}


@pytest.mark.parametrize("labels,says", [
    ("id,name\n0,walk\n1,run\n2,jump\n", "every line is a running number and a name ('0,walk')"),
    ("0,walk\n1,run\n2,jump\n", "every line is a running number and a name"),
    ("label\nwalk\nrun\njump\n", "labels.txt:1: 'label' reads as a header"),
    ("class_name\nwalk\nrun\njump\n", "labels.txt:1: 'class_name' reads as a header"),
    ("action\nwalk\nrun\njump\n", "labels.txt:1: 'action' reads as a header"),  # pandas' to_csv of one column
    ("# classes\nwalk\nrun\njump\n", "labels.txt:1: '# classes' starts with '#'"),
    ("walk\nrun\n# jump is new\njump\n", "labels.txt:3: '# jump is new' starts with '#'"),
])
def test_a_header_or_comment_in_labels_txt_is_refused(tmp_path, labels, says):
    """labels.txt has no header: 'id,name' over '0,walk'... loaded as four classes, 'id,name' class 0
    and every index label one class off, without a word (the split files skip '#' lines, this did not)."""
    _root(tmp_path)
    write_text(tmp_path / "labels.txt", labels)
    write_text(tmp_path / "train.csv", "a.mp4,0\n")
    write_text(tmp_path / "val.csv", "c.mp4,1\n")
    with pytest.raises(DatasetLayoutError, match=r"labels.txt") as ex:
        create_dataset("custom", root=tmp_path).load()
    assert says in str(ex.value), str(ex.value)


@pytest.mark.parametrize("first", ["no action", "No Action", "Text", "name tag", "class act"])
def test_a_first_class_that_merely_looks_like_a_word_of_a_header_is_a_class(tmp_path, first):
    _root(tmp_path)
    write_text(tmp_path / "labels.txt", f"{first}\nrun\njump\n")
    write_text(tmp_path / "train.csv", "a.mp4,0\n")
    write_text(tmp_path / "val.csv", "c.mp4,1\n")
    assert create_dataset("custom", root=tmp_path).load().classes[0] == first


def test_one_video_listed_under_two_spellings_is_refused(tmp_path):
    """The same file as 'v/a.mp4' in train and by its absolute path (or 'v/../v/a.mp4', or a
    symlink) in val: the ids differ, so it passed, the footage in both splits with two labels."""
    _root(tmp_path)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "v" / "a.mp4")
    for other in (f"{tmp_path}/v/a.mp4", "v/../v/a.mp4", "link.mp4"):
        write_text(tmp_path / "train.csv", "v/a.mp4,0\n")
        write_text(tmp_path / "val.csv", f"{other},1\n")
        with pytest.raises(DatasetLayoutError, match=r"val.csv:1: clip .* \(val\) is the video of clip 'v/a' listed at "
                                                     r".*train.csv:1, by another path .*the same footage twice "
                                                     r"\(in two splits\)"):
            create_dataset("custom", root=tmp_path).load()
    # two cuts of one video are two clips, as before
    write_text(tmp_path / "val.csv", f"{tmp_path}/v/a.mp4,1,0,5\nv/a.mp4,1,5,9\n")
    assert len(create_dataset("custom", root=tmp_path).load().clips) == 3


def test_a_utf16_file_and_labels_of_other_digits_are_named(tmp_path):
    """A UTF-16 CSV (Excel's "Unicode text") said "label '\\x00l\\x00a...' is neither..."; a label '²'
    failed with "invalid literal for int()" naming no file, and a full-width '１' was class 1."""
    _root(tmp_path)
    (tmp_path / "val.csv").write_bytes("path,label\nclips/c.mp4,1\n".encode("utf-16"))
    with pytest.raises(DatasetLayoutError, match=r"val.csv: UTF-16 text .*save the file as UTF-8"):
        create_dataset("custom", root=tmp_path).load()
    (tmp_path / "labels.txt").write_bytes("a\nb\n".encode("utf-16"))
    with pytest.raises(DatasetLayoutError, match=r"labels.txt: UTF-16 text"):
        create_dataset("custom", root=tmp_path).load()
    _root(tmp_path)
    for lab in ("²", "１"):
        write_text(tmp_path / "val.csv", f"clips/c.mp4,{lab}\n")
        with pytest.raises(DatasetLayoutError, match=rf"val.csv:1: label '{lab}' is neither a class index nor a line"):
            create_dataset("custom", root=tmp_path).load()


def test_a_path_starting_with_a_hash_is_listed_quoted_and_a_comment_naming_a_video_is_said(tmp_path, caplog):
    """'#1 take.mp4,0' names a video that exists: it was dropped as a comment without a word. A
    comment line is still a comment (said when it names a video that exists, with the quoting that
    lists it); a quoted path starting with '#' is a clip."""
    write_text(tmp_path / "labels.txt", "a\nb\n")
    write_text(tmp_path / "train.csv", 'path,label\n#1 take.mp4,0\n"#2 take.mp4",1\n  # an old note,1\nx.mp4,0\n')
    write_text(tmp_path / "val.csv", "y.mp4,1\n")
    for name in ("#1 take.mp4", "#2 take.mp4", "x.mp4", "y.mp4"):
        make_video(tmp_path / name)
    idx = create_dataset("custom", root=tmp_path).load()
    assert [c.clip_id for c in idx.clips if c.split == "train"] == ["#2 take", "x"]
    assert "train.csv:2: '#1 take.mp4,0' is a comment" in caplog.text and '("#1 take.mp4",...)' in caplog.text
    assert "an old note" not in caplog.text  # names no video: a plain comment


def test_comments_before_the_header_and_comments_quoted_whole(tmp_path):
    """A comment line first made the header line 2, read as a clip ('path' with label 'label'); a
    spreadsheet that quotes every field writes a comment as '"# section"'."""
    write_text(tmp_path / "labels.txt", "a\nb\n")
    write_text(tmp_path / "train.csv", '# made by export.py\npath,label\n"# section one"\nx.mp4,0\n')
    write_text(tmp_path / "val.csv", '"path","label"\n"y.mp4","1"\n')
    idx = create_dataset("custom", root=tmp_path).load()
    assert [(c.clip_id, c.split, c.label) for c in idx.clips] == [("x", "train", 0), ("y", "val", 1)]
    write_text(tmp_path / "train.csv", "# made by export.py\npath,label,start_sec,end_sec\nx.mp4,0,1,2\n")
    with pytest.raises(DatasetLayoutError, match="train.csv:2: header columns 'start_sec,end_sec'"):
        create_dataset("custom", root=tmp_path).load()


def test_two_videos_giving_one_clip_id_are_named_as_two_files(tmp_path):
    """mmaction2's own tests/data/test.avi and test.mp4: 'clip test already listed' read as a line
    given twice."""
    write_text(tmp_path / "labels.txt", "a\nb\n")
    write_text(tmp_path / "train.csv", "test.avi,0\n")
    write_text(tmp_path / "val.csv", "test.mp4,1\n")
    with pytest.raises(DatasetLayoutError, match=r"'test.mp4' and 'test.avi' \(listed at .*train.csv:1\) both give "
                                                 r"clip id 'test' \(ids drop the video's extension\): rename one"):
        create_dataset("custom", root=tmp_path).load()
