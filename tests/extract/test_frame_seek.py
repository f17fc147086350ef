"""Frame cuts that seek (stages/extract/frame_seek.py): the frames a seek gives are the frames counting
from the first one gives, and a stream whose packets cannot say where a frame is counts."""
import numpy as np
import pytest

from pevl_testutils import damaged_transport_stream, make_timecoded_video, read_timecode, remux
from stages.extract import decode, frame_seek
from stages.extract.decode import DecodeError, decode_clip

H264_OPEN_GOP = ("-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", "-bf", "3",
                 "-x264-params", "keyint=8:min-keyint=8:open-gop=1:scenecut=0")


@pytest.fixture
def paths(monkeypatch):
    """Cuts seek from 0.5 s into a stream; each read's path is recorded: 'seek' (landed), 'missed'
    (a seek that did not land), 'count' (from the first frame)."""
    monkeypatch.setattr(frame_seek, "SEEK_AFTER_SECONDS", 0.5)
    taken, read = [], decode._read_frames

    def spy(*args):
        seek = args[-1]
        try:
            yield from read(*args)
        except decode._SeekMissed:
            taken.append("missed")
            raise
        taken.append("count" if seek is None else "seek")

    monkeypatch.setattr(decode, "_read_frames", spy)
    return taken


def _codes(frames):
    return [read_timecode(f) for f in frames]


@pytest.mark.parametrize("name, codec, extra", [
    ("bf.mp4", H264_OPEN_GOP, ()),
    ("a.mkv", H264_OPEN_GOP, ()),
    ("a.ts", ("-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", "-g", "10"), ("-output_ts_offset", "1.4")),
    ("a.webm", ("-c:v", "libvpx-vp9", "-lossless", "1", "-g", "12"), ()),
])
def test_a_frame_cut_into_a_video_seeks_to_the_frames_counting_gives(tmp_path, paths, name, codec, extra):
    p = make_timecoded_video(tmp_path / name, 60, codec=codec, extra=extra)
    _, frames = decode_clip(str(p), start_frame=33, end_frame=47)
    assert _codes(frames) == list(range(33, 47))
    assert paths[-1] == "seek", paths
    _, tail = decode_clip(str(p), start_frame=55, end_frame=60)  # up to the last frame
    assert _codes(tail) == list(range(55, 60)) and paths[-1] == "seek", paths


def test_streams_whose_packets_cannot_place_a_frame_count_from_the_first(tmp_path, paths):
    # variable frame rate: frames 0, 5, ... 45 every .05 s, then 50, 70, ... every .2 s
    vfr = make_timecoded_video(tmp_path / "vfr.mp4", 240, fps=100,
                               vf="select='lt(n,50)*not(mod(n,5))+gte(n,50)*not(mod(n-50,20))'")
    _, frames = decode_clip(str(vfr), start_frame=12, end_frame=16)
    assert _codes(frames) == [90, 110, 130, 150] and paths == ["count"]
    # an MP4 edit list (a stream-copy cut from 1.3 s): decode-only frames before the edit
    src = make_timecoded_video(tmp_path / "bf.mp4", 60, codec=H264_OPEN_GOP)
    edit = remux(src, tmp_path / "edit.mp4", before_input=("-ss", "1.3"))
    _, whole = decode_clip(str(edit))
    _, frames = decode_clip(str(edit), start_frame=10, end_frame=20)
    assert _codes(frames) == _codes(whole[10:20]) and paths[-1] == "count", paths
    # a cut past the stream's end counts (and reports the short cut as before)
    _, frames = decode_clip(str(src), start_frame=50, end_frame=70)
    assert _codes(frames) == list(range(50, 60)) and paths[-1] == "count", paths


def test_a_seek_that_lands_after_the_cut_seeks_further_back_then_counts(tmp_path, paths, monkeypatch):
    p = make_timecoded_video(tmp_path / "bf.mp4", 60, codec=H264_OPEN_GOP)
    plan = frame_seek.seek_plan

    def late(*args, **kw):  # a container that seeks past the keyframe asked for
        got = plan(*args, **kw)
        return None if got is None else frame_seek.dataclasses.replace(got, seek_seconds=got.seek_seconds + 1.0)

    monkeypatch.setattr(frame_seek, "seek_plan", late)
    _, frames = decode_clip(str(p), start_frame=33, end_frame=40)
    assert _codes(frames) == list(range(33, 40)) and paths == ["missed", "seek"]
    monkeypatch.setattr(frame_seek, "EARLIER_SECONDS", (0.1,))  # keyframes every 0.8 s: still after 3.3 s, counting
    paths.clear()
    _, frames = decode_clip(str(p), start_frame=33, end_frame=40)
    assert _codes(frames) == list(range(33, 40)) and paths == ["missed", "missed", "count"]


def test_a_frame_lost_inside_a_seeking_cut_is_an_error_not_a_shifted_cut(tmp_path, paths, monkeypatch):
    p = make_timecoded_video(tmp_path / "bf.mp4", 60, codec=H264_OPEN_GOP)
    told = decode._StderrLines.frame_time

    def one_lost(self, k, timeout=60.0):  # from the cut's third frame on, each frame is the next one's
        t = told(self, k, timeout)
        return t if t is None or t < 35 / 10 else told(self, k + 1, timeout)

    monkeypatch.setattr(decode._StderrLines, "frame_time", one_lost)
    with pytest.raises(DecodeError, match=r"frame 35 of the cut \[33, 45\) decoded at 3\.6.* lost or added"):
        decode_clip(str(p), start_frame=33, end_frame=45)


def test_the_packets_of_a_file_written_again_are_read_again(tmp_path, paths):
    p = make_timecoded_video(tmp_path / "a.mp4", 30, codec=H264_OPEN_GOP)
    first = frame_seek.seek_plan(str(p), "0:0", 10.0, 0.0, 20, 25)
    make_timecoded_video(tmp_path / "a.mp4", 12, codec=H264_OPEN_GOP)
    assert first is not None and first.time_of(0) == 2  # frame 20 at 10 fps
    assert frame_seek.seek_plan(str(p), "0:0", 10.0, 0.0, 20, 25) is None  # 12 frames now: the cut is past the end


def test_a_time_cut_keeps_exactly_the_frames_whose_times_lie_in_it(tmp_path, paths):
    """[start, end) by each frame's presentation time: ffmpeg's -ss/-to pair ended a cut starting
    between frames a frame late (3.37-5.0 s gave 3.4-5.0 s), and times written to the millisecond
    lost a frame starting exactly on it (frame 44 at 30 fps, 1.4667 s, cut as 1.467)."""
    p = make_timecoded_video(tmp_path / "bf.mp4", 60, codec=H264_OPEN_GOP)
    assert _codes(decode_clip(str(p), start_time=3.37, end_time=5.0)[1]) == list(range(34, 50))
    assert _codes(decode_clip(str(p), start_time=4.4, end_time=4.9)[1]) == [44, 45, 46, 47, 48]
    assert _codes(decode_clip(str(p), end_time=0.35)[1]) == [0, 1, 2, 3]
    assert _codes(decode_clip(str(p), start_time=5.55)[1]) == [56, 57, 58, 59]
    with pytest.raises(DecodeError, match=r"no frame in the cut \[3\.370, 3\.380\) s"):
        decode_clip(str(p), start_time=3.37, end_time=3.38)
    paths.clear()
    with pytest.raises(DecodeError, match=r"no frame in the cut \[6\.500, end\) s: the stream ends before it"):
        decode_clip(str(p), start_time=6.5)  # past the end: said by the first seek, not after decoding it all
    assert paths == []
    # a frame cut past the end said only "no frames decoded": the video's length is named
    with pytest.raises(DecodeError, match=r"no frames decoded \(the cut starts at frame 70; the header says the "
                                          r"video has ~60 frames\)"):
        decode_clip(str(p), start_frame=70, end_frame=80)
    q = make_timecoded_video(tmp_path / "30.mp4", 90, fps=30, codec=H264_OPEN_GOP)
    assert _codes(decode_clip(str(q), start_time=44 / 30, end_time=2.0)[1]) == list(range(44, 60))


def test_a_time_cut_in_a_transport_stream_starts_where_it_says(tmp_path, paths):
    """MPEG-TS seeks by byte position and can land a GOP after the keyframe asked for: the first
    frame decoded tells, and the cut seeks further back (it started up to a GOP late before)."""
    p = make_timecoded_video(tmp_path / "a.ts", 100, codec=("-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p",
                                                          "-g", "10"), extra=("-output_ts_offset", "1.4"))
    for start in (3.37, 5.05, 8.0):
        want = [k for k in range(100) if start <= k / 10 < start + 1.3]
        assert _codes(decode_clip(str(p), start_time=start, end_time=start + 1.3)[1]) == want, start


def test_a_seek_onto_a_frame_that_is_no_clean_start_decodes_from_further_back(tmp_path, paths):
    """An intra-refresh stream's container "keyframes" are not clean starts: the frames a seek
    decodes from one are built on references it skipped. The seek looks for a keyframe as decoded
    (showinfo's iskey or an I picture) before the cut and, finding none, counts or decodes from
    the first frame: pixel for pixel the frames of a whole decode."""
    p = make_timecoded_video(tmp_path / "ir.mkv", 60, noise=True, codec=(
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "0", "-x264-params", "intra-refresh=1:keyint=20"))
    _, whole = decode_clip(str(p))
    _, frames = decode_clip(str(p), start_frame=43, end_frame=48)
    assert all(np.array_equal(a, b) for a, b in zip(frames, whole[43:48])) and len(frames) == 5
    assert "seek" not in paths and "missed" in paths, paths
    _, frames = decode_clip(str(p), start_time=4.3, end_time=4.8)
    assert all(np.array_equal(a, b) for a, b in zip(frames, whole[43:48])) and len(frames) == 5


def test_a_time_cut_in_a_stream_whose_timestamps_go_back_is_refused(tmp_path, paths):
    """Two transport streams joined with `cat`: with -copyts nothing evens out the restart, and a
    time names two moments of the file (a seek gave the second one without a word)."""
    a = make_timecoded_video(tmp_path / "a.ts", 40, codec=("-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p",
                                                         "-g", "10"))
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() * 2)
    with pytest.raises(DecodeError, match=r"timestamps go back at packet 40.*joined recordings"):
        decode_clip(str(joined), start_time=1.0, end_time=2.0)
    assert len(decode_clip(str(joined), start_frame=2, end_frame=60)[1]) == 58  # frames are still frames


def test_damage_inside_a_seeking_cut_is_noted_however_far_the_decoder_ran_ahead(tmp_path, paths):
    """The decoder runs ahead of the frames read: its complaint about a frame of the cut can come
    before the cut's first frame is read. Only an open GOP's leading-picture complaints are left
    out there."""
    damaged = damaged_transport_stream(tmp_path, 60)
    for start in (2.0, 2.5, 2.8):
        notes = []
        decode_clip(str(damaged), notes=notes, start_time=start, end_time=3.6)
        assert any("concealed by the decoder" in n for n in notes), (start, notes)


@pytest.mark.parametrize("container, extra", [("mp4", ("-movflags", "+faststart")), ("mkv", ())])
def test_a_time_cut_in_the_lost_part_of_a_file_cut_short_is_a_truncation(tmp_path, paths, container, extra):
    """A seek that reaches the end of the data before the cut's start: the file is cut short, not the
    cut past its end (that was said first, as "no frame in the cut")."""
    p = make_timecoded_video(tmp_path / f"whole.{container}", 100, size=(160, 64), noise=True, extra=extra)
    cut = tmp_path / f"cut.{container}"
    cut.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    for cut_times in (dict(start_time=8.0, end_time=9.0), dict(start_time=8.0)):
        with pytest.raises(DecodeError, match="truncated"):
            decode_clip(str(cut), **cut_times)
