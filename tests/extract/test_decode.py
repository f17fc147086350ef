"""ffmpeg decoding: frame counts, cuts, sizes, and clear reasons for unreadable files."""
import numpy as np
import pytest

from pevl_testutils import make_video
from stages.extract.decode import DecodeError, decode_clip, probe


def test_probe_and_decode_every_frame(tmp_path):
    p = make_video(tmp_path / "a.mp4", frames=24, size=(64, 48), fps=12)
    info = probe(str(p))
    assert (info.width, info.height, info.fps) == (64, 48, 12.0)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    _, frames = decode_clip(str(p))
    assert len(frames) == 24
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[12])  # the pattern moves


def test_time_and_frame_cuts(tmp_path):
    p = make_video(tmp_path / "a.mp4", frames=24, size=(64, 48), fps=12)
    _, all_frames = decode_clip(str(p))
    _, cut = decode_clip(str(p), start_frame=5, end_frame=11)
    assert len(cut) == 6
    np.testing.assert_array_equal(cut[0], all_frames[5])
    _, tcut = decode_clip(str(p), start_time=0.5, end_time=1.5)
    assert len(tcut) == 12
    # accurate seek: the first frame of a 0.5 s cut is decoded frame 6 at 12 fps
    np.testing.assert_array_equal(tcut[0], all_frames[6])


def test_portrait_odd_size(tmp_path):
    p = make_video(tmp_path / "p.mp4", frames=6, size=(47, 81))
    info, frames = decode_clip(str(p))
    assert (info.width, info.height) == (47, 81)
    assert frames[0].shape == (81, 47, 3)


@pytest.mark.parametrize("kind, reason", [
    ("zero", "empty file"),
    ("text", "moov atom not found"),
    ("truncated_head", "moov atom not found"),
    ("truncated_tail", "truncated: decoded"),
    ("missing", "not found"),
])
def test_unreadable_files_say_why(tmp_path, kind, reason):
    p = tmp_path / f"{kind}.mp4"
    if kind == "zero":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not a video\n")
    elif kind == "truncated_head":
        good = make_video(tmp_path / "g.mp4", frames=48, size=(160, 120), fps=24)
        p.write_bytes(good.read_bytes()[:3000])  # moov atom at the end is cut off
    elif kind == "truncated_tail":
        good = make_video(tmp_path / "g.mp4", frames=48, size=(160, 120), fps=24, faststart=True)
        data = good.read_bytes()
        p.write_bytes(data[: len(data) // 2])  # header intact, half the frames gone
    with pytest.raises(DecodeError, match=reason):
        decode_clip(str(p))
