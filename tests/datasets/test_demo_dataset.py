"""The built-in synthetic demo dataset: generation, index, poses vs video, determinism, concurrent
first use, and the 16-vs-48 frame aliasing pairs it exists to show."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from stages.datasets import DATASET_ADAPTERS, create_dataset
from stages.datasets.base import DatasetLayoutError, check_labels
from stages.datasets.demo import DemoDataset, render
from stages.datasets.demo import generate as gen
from stages.datasets.demo import skeleton_motion as sm

REPO = Path(__file__).resolve().parents[2]
TINY = dict(clips_per_class=(2, 1), num_frames=(32, 48), seed=7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "tiny"
    calls = []
    ds = create_dataset("demo", root=root, workers=1, **TINY)
    index = ds.load(progress=lambda d, t: calls.append((d, t)))
    return ds, index, calls


def _decode(path: str) -> tuple[np.ndarray, tuple[int, int]]:
    import imageio_ffmpeg

    gen_ = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
    meta = next(gen_)
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in gen_]
    return np.stack(frames), (h, w)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------------
def test_adapter_attributes():
    assert "demo" in DATASET_ADAPTERS
    assert DemoDataset.name == "demo" and DemoDataset.needs_root is False and DemoDataset.has_poses
    assert DemoDataset.skeleton == "coco17"
    assert dict(DemoDataset.extract_defaults) == {"pose_source": "dataset", "short_side": 128}
    ds = DemoDataset()  # no root: under the default data root, named by generator version
    assert ds.root.name == f"demo-v{gen.GENERATOR_VERSION}"
    assert DemoDataset(**TINY).root.name.startswith(f"demo-v{gen.GENERATOR_VERSION}-")
    assert DemoDataset(data_root="/elsewhere").root == Path("/elsewhere").resolve() / ds.root.name
    with pytest.raises(ValueError, match="unknown dataset option clips_per_clas .*did you mean clips_per_class"):
        DemoDataset(clips_per_clas=3)


def test_index(tiny):
    ds, index, calls = tiny
    check_labels(index)
    assert index.name == "demo" and index.skeleton == "coco17" and index.coarse_type == "gymnastic"
    assert index.num_classes >= 8
    assert len(set(index.classes)) == index.num_classes  # distinct texts
    assert index.split_counts() == {"train": 2 * index.num_classes, "val": index.num_classes}
    assert {c.label for c in index.select("train")} == set(range(index.num_classes))
    assert index.missing() == []
    assert [Path(p).name for p in index.source_files] == ["annotations.json"]
    # class texts are sentences of sub-action phrases, and the phrases are shared across classes
    subs = index.meta["sub_actions"]
    for text, parts in zip(index.classes, subs):
        assert text == ", ".join(parts) and len(parts) >= 3
    for i, parts in enumerate(subs):
        others = {p for j, q in enumerate(subs) if j != i for p in q}
        assert set(parts) & others, f"class {i} shares no sub-action"
    counts = {}
    for parts in subs:
        for p in parts:
            counts[p] = counts.get(p, 0) + 1
    assert sum(1 for v in counts.values() if v >= 3) >= 3
    # clip ids and on-disk layout
    c = index.clips[0]
    assert c.clip_id.startswith("demo_") and c.video.endswith(f"videos/{c.clip_id}.mp4")
    assert (Path(index.root) / "poses" / f"{c.clip_id}.npz").is_file()
    ann = json.loads((Path(index.root) / "annotations.json").read_text())
    assert ann["seed"] == 7 and ann["generator_version"] == gen.GENERATOR_VERSION and ann["fps"] == 24
    # progress reported up to the total
    assert calls[0] == (0, len(index.clips)) and calls[-1] == (len(index.clips), len(index.clips))


def test_poses_match_video_and_land_on_figure(tiny):
    ds, index, _ = tiny
    cfg = gen.normalize_config(**TINY)
    w, h = cfg["size"]
    hits = total = 0
    for clip in index.clips[:: max(1, len(index.clips) // 8)]:
        track = ds.dataset_poses(clip)
        frames, size = _decode(clip.video)
        assert size == track.frame_size == (h, w)
        assert track.keypoints.shape == (frames.shape[0], 17, 2) and track.num_frames == clip.extra["num_frames"]
        assert track.keypoints.dtype == np.float32 and track.scores.dtype == np.float32
        assert set(np.unique(track.scores)) <= {0.0, sm.OCCLUDED_SCORE, 1.0}
        # a visible joint lies on the drawn figure: the decoded pixel differs from the background
        perf = gen.performer(cfg, clip.split, int(clip.clip_id.rsplit("_", 1)[1]))
        bg = render.background(perf.look, w, h).astype(np.int32)
        for f in range(0, frames.shape[0], 3):
            for j in np.flatnonzero(track.scores[f] == 1.0):
                x, y = np.round(track.keypoints[f, j]).astype(int)
                if not (1 <= x < w - 1 and 1 <= y < h - 1):
                    continue
                total += 1
                hits += int(np.abs(frames[f, y, x].astype(np.int32) - bg[y, x]).sum() > 40)
        boxes = ds.person_boxes(clip)
        assert boxes.shape == (frames.shape[0], 4)
        seen = track.scores > 0
        kp = track.keypoints
        assert np.all(boxes[:, 0:1] <= np.where(seen, kp[..., 0], np.inf) + 1e-3)
    assert total > 500 and hits / total > 0.97, (hits, total)


def test_face_joints_hidden_when_facing_away():
    cfg = gen.normalize_config()
    label = [c.key for c in sm.CLASSES].index("step_turn_around")
    p = gen.clip_poses(cfg, label, "train", 0)
    assert p["scores"][0, :3].min() == 1.0  # starts facing the camera
    assert p["scores"][-1, :3].max() == 0.0  # ends facing away: no nose, no eyes
    k = p["keypoints"]
    assert k[0, 5, 0] > k[0, 6, 0] and k[-1, 5, 0] < k[-1, 6, 0]  # shoulders swapped sides


def test_deterministic(tiny, tmp_path):
    _, index, _ = tiny
    first = Path(index.root)
    again = tmp_path / "again"
    DemoDataset(root=again, workers=2, **TINY).load()  # threads do not change the bytes
    a, b = _tree_hashes(first), _tree_hashes(again)
    assert a.keys() == b.keys()
    same = [k for k in a if not k.startswith("videos/")]
    assert all(a[k] == b[k] for k in same), "annotations/poses differ between two generations"
    videos = [k for k in a if k.startswith("videos/")]
    differ = [k for k in videos if a[k] != b[k]]
    for k in differ[:3]:  # if the encoder is not bit-exact here, the decoded frames still must be
        assert np.array_equal(_decode(str(first / k))[0], _decode(str(again / k))[0])
    assert not differ, "mp4 bytes differ between two single-threaded encodes"
    # another seed gives another dataset
    other = gen.clip_poses(gen.normalize_config(**{**TINY, "seed": 8}), 0, "train", 0)["keypoints"]
    mine = gen.clip_poses(gen.normalize_config(**TINY), 0, "train", 0)["keypoints"]
    assert other.shape != mine.shape or not np.allclose(other, mine)


def test_concurrent_first_use_leaves_one_dataset(tmp_path):
    root = tmp_path / "shared" / "demo"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from stages.datasets.demo import DemoDataset
        idx = DemoDataset(root={str(root)!r}, workers=1, clips_per_class=(1, 0), num_frames=32, seed=3).load()
        print(len(idx.clips))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == str(len(sm.CLASSES))
    assert gen.is_complete(root)
    # nothing left beside it but the lock file
    assert sorted(p.name for p in root.parent.iterdir()) == sorted(["demo", ".demo.lock"])
    assert len(list((root / "videos").iterdir())) == len(sm.CLASSES)


def test_refuses_foreign_or_mismatched_root(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a demo dataset")
    with pytest.raises(DatasetLayoutError):
        DemoDataset(root=foreign, clips_per_class=(1, 0), num_frames=32).load()
    assert (foreign / "keep.txt").exists()
    made = tmp_path / "made"
    DemoDataset(root=made, workers=1, clips_per_class=(1, 0), num_frames=32).load()
    with pytest.raises(DatasetLayoutError):
        DemoDataset(root=made, clips_per_class=(1, 0), num_frames=32, seed=1).load()


# ------------------------------------------------------------------------------------------------
# Aliasing: 16 segment-middle frames cannot tell the pairs apart; 48 pose frames can.
# ------------------------------------------------------------------------------------------------
def _prominent_peaks(x: np.ndarray, prominence: float = 0.3) -> int:
    """Local maxima rising at least ``prominence`` (of the sequence's range) above both sides."""
    x = np.asarray(x, dtype=np.float64)
    x = (x - x.min()) / max(1e-9, x.max() - x.min())
    n = 0
    for i in range(len(x)):
        left = x[i - 1] if i > 0 else -np.inf
        right = x[i + 1] if i + 1 < len(x) else -np.inf
        if not (x[i] > left and x[i] >= right):
            continue
        lo_l = lo_r = x[i]
        j = i
        while j > 0 and x[j - 1] <= x[i]:
            j -= 1
            lo_l = min(lo_l, x[j])
        j = i
        while j + 1 < len(x) and x[j + 1] <= x[i]:
            j += 1
            lo_r = min(lo_r, x[j])
        n += int(x[i] - max(lo_l, lo_r) >= prominence)
    return n


def _sign_changes(x: np.ndarray) -> int:
    s = np.sign(x)
    s = s[s != 0]
    return int((s[1:] != s[:-1]).sum())


# event counters on the sampled COCO-17 joints (image coordinates)
COUNTERS = {
    # turns: the left shoulder is right of the right shoulder while facing the camera
    "jump_turn2": lambda k: _sign_changes(k[:, 5, 0] - k[:, 6, 0]),
    # kicks: the right ankle rising above the left one
    "kick_right3": lambda k: _prominent_peaks(k[:, 15, 1] - k[:, 16, 1]),
    # waves: the right forearm's angle from upright (a wide wave sweeps it past horizontal, where its
    # x extent turns back, so the angle; unwrapped: the hanging arm sits at +-180 deg)
    "wave_right3": lambda k: _prominent_peaks(np.unwrap(np.arctan2(k[:, 10, 0] - k[:, 8, 0], k[:, 8, 1] - k[:, 10, 1]))),
}
TRUE_EXTRA = {"jump_turn2": 4, "kick_right3": 1, "wave_right3": 1}  # 2 turns = 4 crossings


@pytest.mark.parametrize("pair", [p[:2] for p in sm.ALIASING_PAIRS], ids=lambda p: f"{p[0]}-vs-{p[1]}")
def test_pairs_alias_at_16_frames_and_resolve_at_48(pair):
    cfg = gen.normalize_config()  # the full demo's settings: clips of 64, 80 or 96 frames
    keys = [c.key for c in sm.CLASSES]
    a, b = (keys.index(k) for k in pair)
    count = COUNTERS[pair[1]]
    lengths = set()
    for split in ("train", "val"):
        for i in range(8):
            ka = gen.clip_poses(cfg, a, split, i)
            kb = gen.clip_poses(cfg, b, split, i)  # same performer, other class
            n = ka["keypoints"].shape[0]
            lengths.add(n)
            i16, i48 = sm.sample_indices(n, 16), sm.sample_indices(n, 48)
            # 16 frames: the very same joints (and scores), so the same pictures
            assert np.abs(ka["keypoints"][i16] - kb["keypoints"][i16]).max() < 1e-3
            assert np.array_equal(ka["scores"][i16], kb["scores"][i16])
            assert count(ka["keypoints"][i16]) == count(kb["keypoints"][i16])
            # 48 frames: clearly different joints, and the extra turns/kicks/waves are counted
            assert np.abs(ka["keypoints"][i48] - kb["keypoints"][i48]).max() > 5.0
            assert count(kb["keypoints"][i48]) - count(ka["keypoints"][i48]) == TRUE_EXTRA[pair[1]]
    assert lengths == {64, 80, 96}


def test_aliased_frames_render_identically():
    cfg = gen.normalize_config(size=(176, 128))
    keys = [c.key for c in sm.CLASSES]
    a, b = keys.index("kick_right2"), keys.index("kick_right3")
    fa, _ = gen.render_clip(cfg, a, "val", 1)
    fb, _ = gen.render_clip(cfg, b, "val", 1)
    i16 = sm.sample_indices(fa.shape[0], 16)
    i48 = sm.sample_indices(fa.shape[0], 48)
    assert np.array_equal(fa[i16], fb[i16])
    assert not np.array_equal(fa[i48], fb[i48])
    # while classes that differ in slow motion do not alias
    c = keys.index("jump_turn1")
    d = keys.index("jump_straight")
    pc, pd = gen.clip_poses(cfg, c, "val", 1), gen.clip_poses(cfg, d, "val", 1)
    n = pc["keypoints"].shape[0]
    assert np.abs(pc["keypoints"][sm.sample_indices(n, 16)] - pd["keypoints"][sm.sample_indices(n, 16)]).max() > 5.0


def test_figure_stays_inside_the_test_crops(tmp_path):
    """Every seen joint (kicks included) lies inside the central 112-pixel crop of 128-pixel frames."""
    from stages.geometry import crop_offsets, resized_size

    ds = DemoDataset(root=tmp_path / "demo", **TINY)
    index = ds.load()
    h, w = ds._frame_size
    ch, cw = resized_size(h, w, 128, 16)
    for clip in index.clips:
        track = ds.dataset_poses(clip)
        ys = track.keypoints[..., 1][track.scores > 0] * ch / h
        for where in ("first", "center", "last"):
            top, _ = crop_offsets(ch, cw, 112, 16, where)
            assert ys.min() >= top and ys.max() < top + 112, (clip.clip_id, where, ys.min(), ys.max())


def test_zero_clips_per_class_is_refused(tmp_path):
    """-o clips_per_class=0 made a demo of no training clip (and one val clip per class), silently."""
    with pytest.raises(ValueError, match="clips_per_class must be >= 1"):
        DemoDataset(root=tmp_path / "demo", clips_per_class=0, num_frames=32).load()
    assert not (tmp_path / "demo").exists()
