"""Which clips carry their video's sha256 (``source_sha256``, by which `pipeline predict` reuses a
clip's poses): whole videos only. A clip cut from a longer video is never reused, and hashing its
source for each of its clips read a FineGym event once per element."""
from pevl_testutils import make_video, tiny_hrnet_config

from cache.keys import file_sha256


def test_whole_videos_are_hashed_cut_clips_are_not(tmp_path):
    from pipeline.engines.local import run_extract
    from stages.extract.plan import ExtractOptions

    root = tmp_path / "data"
    make_video(root / "whole.mp4", frames=6, size=(48, 32))
    make_video(root / "event.mp4", frames=12, size=(48, 32))
    (root / "labels.txt").write_text("jump\nspin\n")
    (root / "train.csv").write_text("path,label,start_frame,end_frame\nwhole.mp4,0,,\nevent.mp4,1,4,10\n")
    (root / "val.csv").write_text("path,label\n")
    rep = run_extract(ExtractOptions(dataset="custom", root=str(root), cache_root=str(tmp_path / "cache"),
                                     pose_options={"checkpoint": "none", "config": tiny_hrnet_config(),
                                                   "flip_test": False},
                                     dataset_options={"coarse_type": "x"}, settings={"num_frames": 2}))
    assert rep.complete and len(rep.done_now) == 2
    attrs = {r["clip_id"]: rep.entry.read_clip(r["uid"], arrays=("scores",)).attrs for r in rep.entry.clips()}
    assert attrs["whole"]["source_sha256"] == file_sha256(root / "whole.mp4")
    cut = attrs["event@4-10"]  # (a cut clip's id carries its cut)
    assert cut["cut"] == {"start_frame": 4, "end_frame": 10} and "source_sha256" not in cut
