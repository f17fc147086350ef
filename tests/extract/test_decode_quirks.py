"""What real footage carries, made by ffmpeg inside the tests: rotation, non-square pixels, variable
frame rate, B-frames / open GOP, odd sizes, XVID in AVI, no video stream, a wrong container
duration and truncation. Each decision is in stages/extract/decode.py's docstring and docs/extraction.md."""
import struct
import subprocess
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest

from pevl_testutils import (damaged_transport_stream, ffmpeg_exe, make_timecoded_video, make_video, pattern_video,
                             read_timecode, remux)
from stages.extract.decode import DecodeError, decode_clip, describe, displayed_size, probe


def _codes(frames):
    return [read_timecode(f) for f in frames]


@pytest.mark.parametrize("degrees, k", [(90, 1), (270, 3), (180, 2)])
def test_rotated_phone_video_decodes_upright(tmp_path, degrees, k):
    stored = pattern_video(tmp_path / "stored.mp4")
    # how phones write it: a display matrix in the mp4 track header ("-metadata rotate" is gone from ffmpeg 6+)
    p = remux(tmp_path / "stored.mp4", tmp_path / "phone.mp4", before_input=("-display_rotation", str(degrees)))
    info = probe(str(p))
    assert info.rotation == degrees and info.stored_size == (64, 48)
    want = np.rot90(stored, k)  # ffmpeg's display rotation is counter-clockwise, like np.rot90
    assert (info.height, info.width) == want.shape[:2]
    _, frames = decode_clip(str(p))
    np.testing.assert_array_equal(frames[0], want)  # upright, not sideways, not squeezed
    assert any("displayed" in n for n in describe(info))


def test_non_square_pixels_resampled_to_display_aspect(tmp_path):
    p = make_timecoded_video(tmp_path / "anamorphic.mp4", 6, size=(80, 32), extra=("-vf", "setsar=3/2"))
    info = probe(str(p))
    assert info.sar == (3, 2) and info.stored_size == (80, 32)
    assert (info.width, info.height) == (120, 32)  # 80 stored pixels x 3/2 = 120 square pixels
    _, frames = decode_clip(str(p))
    assert frames[0].shape == (32, 120, 3)
    narrow = [cv2.resize(f, (80, 32), interpolation=cv2.INTER_AREA) for f in frames]
    assert _codes(narrow) == [0, 1, 2, 3, 4, 5]  # the same pictures, only wider
    assert any("SAR 3:2" in n for n in describe(info))
    # rotation turns the SAR too: stored 80x32 at 3:2, turned 90 -> 32 wide at 2:3 -> 21x80
    r = remux(p, tmp_path / "anamorphic_rot.mp4", before_input=("-display_rotation", "90"))
    rinfo = probe(str(r))
    assert (rinfo.width, rinfo.height) == displayed_size(80, 32, 90, (3, 2)) == (21, 80)
    assert decode_clip(str(r))[1][0].shape == (80, 21, 3)


def test_variable_frame_rate_passthrough_and_time_cuts(tmp_path):
    # 100 fps source; keep every 5th frame for 0.5 s, then every 20th: frame times 0, .05, ... .45, .5, .7, ... 2.3
    p = make_timecoded_video(tmp_path / "vfr.mp4", 240, fps=100,
                             vf="select='lt(n,50)*not(mod(n,5))+gte(n,50)*not(mod(n-50,20))'")
    info = probe(str(p))
    assert info.variable_frame_rate and any("variable frame rate" in n for n in describe(info))
    notes = []
    _, frames = decode_clip(str(p), notes=notes)
    assert _codes(frames) == list(range(0, 50, 5)) + list(range(50, 240, 20))  # as stored, nothing duplicated
    assert notes == []  # the average-rate header is not taken for a truncation
    _, cut = decode_clip(str(p), start_time=0.4, end_time=1.5)
    assert _codes(cut) == [40, 45, 50, 70, 90, 110, 130]  # frames whose time is in [0.4, 1.5)
    # in Matroska the header gives the time base's rate (100 fps) and nothing tells of the gaps:
    # the count decoded against the rate's promise does
    mkv = make_timecoded_video(tmp_path / "vfr.mkv", 240, fps=100,
                               vf="select='lt(n,50)*not(mod(n,5))+gte(n,50)*not(mod(n-50,20))'")
    notes = []
    minfo, frames = decode_clip(str(mkv), notes=notes)
    assert not minfo.variable_frame_rate and _codes(frames) == _codes(decode_clip(str(p))[1])
    assert any(n.startswith("decoded 20 frames where the header's 100 fps") and "frame rate varies" in n
               for n in notes), notes


def test_b_frames_and_open_gop_cut_exactly(tmp_path):
    p = make_timecoded_video(tmp_path / "bf.mp4", 40, codec=(
        "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", "-bf", "3",
        "-x264-params", "keyint=8:min-keyint=8:open-gop=1:scenecut=0"))
    _, frames = decode_clip(str(p))
    assert _codes(frames) == list(range(40))  # display order, not decode order
    _, cut = decode_clip(str(p), start_time=1.3, end_time=2.5)  # starts between keyframes
    assert _codes(cut) == list(range(13, 25))


@pytest.mark.parametrize("size", [(83, 47), (80, 32)])
def test_xvid_in_avi_and_odd_sizes(tmp_path, size):
    codec = ("-c:v", "libxvid", "-q:v", "2") if size == (80, 32) else ("-c:v", "mpeg4", "-q:v", "2")
    p = make_timecoded_video(tmp_path / "clip.avi", 20, size=size, codec=codec)
    info, frames = decode_clip(str(p))
    assert info.codec == "mpeg4" and (info.width, info.height) == size
    assert frames[0].shape == (size[1], size[0], 3)
    assert _codes(frames) == list(range(20))
    assert _codes(decode_clip(str(p), start_time=0.5, end_time=1.0)[1]) == [5, 6, 7, 8, 9]


def test_file_without_video_stream(tmp_path):
    audio = tmp_path / "talk.m4a"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=1",
                    str(audio)], check=True)
    with pytest.raises(DecodeError, match=r"no video stream \(the file has only audio\)"):
        probe(str(audio))
    # cover art is a "video" stream ffmpeg marks as an attached picture: still no video
    cover = tmp_path / "cover.png"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x64", "-frames:v", "1", str(cover)], check=True)
    art = tmp_path / "song.m4a"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(audio), "-i", str(cover),
                    "-map", "0", "-map", "1", "-c:a", "copy", "-c:v", "png", "-disposition:v:0", "attached_pic",
                    str(art)], check=True)
    with pytest.raises(DecodeError, match=r"no video stream \(the file has only audio, cover art\)"):
        probe(str(art))


def _mkv_with_duration_times(path, factor):
    """Multiply the Segment Duration element of an mkv: the header lies, the stream is whole."""
    data = bytearray(path.read_bytes())
    i = data.find(b"\x44\x89")
    size = data[i + 2] & 0x7F
    fmt = ">d" if size == 8 else ">f"
    (v,) = struct.unpack(fmt, data[i + 3: i + 3 + size])
    data[i + 3: i + 3 + size] = struct.pack(fmt, v * factor)
    path.write_bytes(bytes(data))
    return path


def test_wrong_container_duration_is_not_a_truncation(tmp_path):
    p = _mkv_with_duration_times(make_timecoded_video(tmp_path / "liar.mkv", 30), 10)
    assert probe(str(p)).duration == pytest.approx(30.0)  # the header says 30 s, the stream holds 3 s
    notes = []
    _, frames = decode_clip(str(p), notes=notes)
    assert _codes(frames) == list(range(30))
    assert len(notes) == 1 and "taken as complete" in notes[0]
    # an audio track longer than the video: the container duration is the audio's
    video = make_timecoded_video(tmp_path / "v.mp4", 10)
    audio = tmp_path / "a.m4a"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=5",
                    str(audio)], check=True)
    av = tmp_path / "av.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(video), "-i", str(audio),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", str(av)], check=True)
    assert probe(str(av)).duration == pytest.approx(5.0, abs=0.1)
    assert _codes(decode_clip(str(av))[1]) == list(range(10))


def _concat(parts, out):
    """``parts`` joined by ffmpeg's concat demuxer, re-encoding nothing (how recordings get joined)."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", str(out)], check=True)
    return out


def test_a_frame_size_change_mid_stream_is_refused_not_squeezed(tmp_path):
    """ffmpeg scales every frame after a size change to the first size, silently: refused, naming both."""
    parts = [make_timecoded_video(tmp_path / "a.ts", 10, size=(80, 32), extra=("-f", "mpegts")),
             make_timecoded_video(tmp_path / "b.ts", 10, size=(160, 48), extra=("-f", "mpegts"))]
    joined = _concat(parts, tmp_path / "joined.ts")
    with pytest.raises(DecodeError, match="frame size changes mid-stream, from 80x32 to 160x48"):
        decode_clip(str(joined))
    with pytest.raises(DecodeError, match="frame size changes mid-stream"):  # a frame cut across the change too
        decode_clip(str(joined), start_frame=5, end_frame=15)
    assert len(decode_clip(str(parts[1]))[1]) == 10  # one size throughout: decoded


def test_close_timestamps_of_a_variable_rate_join_decode_without_complaint(tmp_path):
    """10 fps then 30 fps joined: every frame comes through and nothing is taken for damage (ffmpeg's
    own muxer complained of colliding timestamps in its guessed time base, read as a truncation
    beside a longer audio track)."""
    parts = [make_timecoded_video(tmp_path / "a.mp4", 10, fps=10), make_timecoded_video(tmp_path / "b.mp4", 30, fps=30)]
    joined = _concat(parts, tmp_path / "joined.mp4")
    notes = []
    _, frames = decode_clip(str(joined), notes=notes)
    assert _codes(frames) == list(range(10)) + list(range(30)) and notes == []


def test_a_metadata_value_of_several_lines_is_not_a_problem(tmp_path):
    """ffmpeg's stream dump (level info) prints a multi-line title's later lines without a level:
    they are info too, not damage (a downloaded video's description; with a longer audio track
    they failed the clip as truncated)."""
    video = make_timecoded_video(tmp_path / "v.mp4", 10, extra=("-metadata", "title=first line\nsecond line"))
    notes = []
    assert _codes(decode_clip(str(video), notes=notes)[1]) == list(range(10)) and notes == []
    audio = tmp_path / "a.m4a"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=3",
                    str(audio)], check=True)
    av = tmp_path / "av.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(video), "-i", str(audio),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", "-metadata", "comment=one\ntwo\nthree", str(av)],
                   check=True)
    notes = []
    assert _codes(decode_clip(str(av), notes=notes)[1]) == list(range(10))
    assert len(notes) == 1 and "taken as complete" in notes[0]


def test_a_corrupt_packet_mid_stream_is_concealed_not_taken_for_truncation(tmp_path):
    """A damaged transport-stream packet in the middle leaves every frame decodable: kept, with a
    note. (The same words at the end of the data mean the file was cut off: the AVI case of
    test_real_truncation_is_never_missed, whose header duration comes from what is left.)"""
    damaged = damaged_transport_stream(tmp_path, 40)
    notes = []
    _, frames = decode_clip(str(damaged), notes=notes)
    assert len(frames) == 40 and any("concealed by the decoder: Packet corrupt" in n for n in notes)
    # a cut that ends before the file does (we stop ffmpeg) is told of the damage it decoded through
    # too; it was noted only when the decode ran to the file's end
    for cut in (dict(start_frame=2, end_frame=36), dict(start_time=0.2, end_time=3.6)):
        notes = []
        _, frames = decode_clip(str(damaged), notes=notes, **cut)
        assert len(frames) == 34 and any("concealed by the decoder: Packet corrupt" in n for n in notes), (cut, notes)


@pytest.mark.parametrize("container, frames, kept", [("mp4", 30, 0.5), ("mkv", 30, 0.5), ("avi", 30, 0.5),
                                                     ("liar.mkv", 30, 0.5), ("packed.avi", 120, 0.8)])
def test_real_truncation_is_never_missed(tmp_path, container, frames, kept):
    """(packed.avi: XVID with B-frames, which ffmpeg stamps 3 frames late; the corrupt last packet of
    a file cut at 80% looked like damage inside what decoded, and the file was taken as whole. A
    packed AVI cut cleanly between packets still cannot be told from a shorter one, as TS.)"""
    codec = ("-c:v", "libxvid", "-q:v", "2") if container == "avi" else (
        ("-c:v", "libxvid", "-bf", "2", "-q:v", "2") if container == "packed.avi" else (
            "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p"))
    extra = ("-movflags", "+faststart") if container == "mp4" else ()
    p = make_timecoded_video(tmp_path / f"whole.{container.split('.')[-1]}", frames, size=(160, 64), codec=codec,
                             extra=extra, noise=True)
    if container == "liar.mkv":  # a lying header does not hide a cut-off file either
        _mkv_with_duration_times(p, 10)
    data = p.read_bytes()
    cut = tmp_path / f"cut{p.suffix}"
    cut.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(DecodeError, match="truncated"):
        decode_clip(str(cut))


def test_frame_size_disagreeing_with_the_probe_is_an_error(tmp_path):
    p = make_video(tmp_path / "a.mp4", frames=3, size=(64, 48))
    info = probe(str(p))
    from dataclasses import replace

    from stages.extract.decode import read_frames

    wrong = replace(info, width=48, height=64)  # what a probe that missed a rotation would say
    with pytest.raises(DecodeError, match="decoded frame 0 is 64x48, but the stream header says 48x64"):
        list(read_frames(str(p), wrong))


def test_rotated_phone_video_extracts_upright_with_poses_in_its_frames(tmp_path):
    """Through extraction: the cached frames are portrait, orig_size is the displayed size, and poses
    given for the displayed frames (img_shape (64, 48)) are taken as they are, not rescaled."""
    import pickle

    from pevl_testutils import write_custom_dataset
    from stages.datasets import create_dataset
    from stages.extract.clip import ExtractSettings, extract_clip
    from stages.extract.pose import create_pose_source

    root = tmp_path / "data"
    pattern_video(tmp_path / "stored.mp4")
    root.mkdir()
    remux(tmp_path / "stored.mp4", root / "phone.mp4", before_input=("-display_rotation", "90"))
    write_custom_dataset(root, [("phone.mp4", 0, "train")], ["a", "b"])
    kp = np.tile(np.array([[10.0, 50.0]], np.float32), (1, 4, 17, 1))  # (M, T, V, 2) in displayed pixels
    (tmp_path / "poses.pkl").write_bytes(pickle.dumps([{
        "frame_dir": "phone", "img_shape": (64, 48), "keypoint": kp, "keypoint_score": np.ones((1, 4, 17), np.float32)}]))
    ds = create_dataset("custom", root=root)
    (clip,) = ds.load().clips
    res = extract_clip(clip, ds, create_pose_source(f"pkl:{tmp_path / 'poses.pkl'}"),
                       ExtractSettings(num_frames=2, short_side=48))
    assert res.attrs["orig_size"] == [64, 48] and res.attrs["rotation"] == 90
    assert res.arrays["frames"].shape[1:3] == (64, 48)  # portrait, as displayed
    np.testing.assert_array_equal(res.arrays["keypoints"][0, 0], [10.0, 50.0])
    assert not any("rescaled" in n for n in res.notes) and any("displayed" in n for n in res.notes)



def test_a_missing_video_names_a_close_name_beside_it_and_a_folder_is_not_a_video(tmp_path):
    """A typo in an annotation file: the error names the file it was probably meant to be."""
    make_video(tmp_path / "jump_01.mp4", frames=2, size=(32, 32))
    with pytest.raises(DecodeError, match=r"video file not found: .*jump_10.mp4; did you mean 'jump_01.mp4'\?"):
        probe(str(tmp_path / "jump_10.mp4"))
    with pytest.raises(DecodeError, match=r"video file not found: .*zzz.mp4$"):
        probe(str(tmp_path / "zzz.mp4"))
    # a listed name without its extension, and a path written with Windows' separators
    with pytest.raises(DecodeError, match=r"video file not found: .*/jump_01; did you mean 'jump_01.mp4'\?"):
        probe(str(tmp_path / "jump_01"))
    (tmp_path / "v").mkdir()
    make_video(tmp_path / "v" / "a.mp4", frames=2, size=(32, 32))
    with pytest.raises(DecodeError, match=r"did you mean '.*/v/a.mp4' \(a path's folders are separated by '/'\)\?"):
        probe(str(tmp_path) + "/v\\a.mp4")
    # the name as a Mac wrote it (NFD: 'e' and a combining accent), listed composed (NFC)
    make_video(tmp_path / unicodedata.normalize("NFD", "café.mp4"), frames=2, size=(32, 32))
    with pytest.raises(DecodeError, match="same name in Unicode's NFD form, other bytes"):
        probe(str(tmp_path / unicodedata.normalize("NFC", "café.mp4")))
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(DecodeError, match="clip.mp4 is a folder, not a video file"):
        probe(str(tmp_path / "clip.mp4"))


@pytest.mark.parametrize("name", ["-2bEVO4ULvs.mp4", "clip:1.mp4"])
def test_names_ffmpeg_would_read_as_an_option_or_a_protocol(tmp_path, monkeypatch, name):
    """FineGym's videos are named by YouTube id, which may start with '-'; 'clip:1.mp4' relative is a
    protocol to ffmpeg. Relative names of both kinds are read, seeked and written (predict's and
    `cache show`'s videos were refused: 'Protocol not found', 'Unrecognized option')."""
    from stages.extract.frame_seek import first_frame_offset
    from stages.show import write_mp4

    make_timecoded_video(tmp_path / "made.mp4", 20)
    (tmp_path / name).write_bytes((tmp_path / "made.mp4").read_bytes())
    monkeypatch.chdir(tmp_path)
    info, frames = decode_clip(name, start_time=0.5, end_time=1.0)
    assert _codes(frames) == [5, 6, 7, 8, 9]
    assert first_frame_offset(name, info.stream, None) == 0  # ffmpeg ran on the file (None: it could not)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")  # `predict --out .`: the bare name goes to ffmpeg as its output
    out = write_mp4(Path(".") / name, frames, 10.0)
    assert probe(str(out)).width == info.width and (tmp_path / "out" / name).is_file()
    # made absolute, not normalised: '..' after a link goes through the link's target, as the OS does
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "out" / "link").symlink_to(tmp_path / "deep" / "er", target_is_directory=True)
    (tmp_path / "deep" / name).write_bytes((tmp_path / "made.mp4").read_bytes())
    assert probe(str(Path("link") / ".." / name)).width == info.width
