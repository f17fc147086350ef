"""stages.train.explain: where pictures go by default."""
from pathlib import Path

from stages.train.explain import default_out_dir


def test_default_folder_stays_beside_the_checkpoint_whatever_the_clip_id(tmp_path):
    """A custom dataset's clip id may hold '../' or '/': the default folder is made of the id as the
    cache names its clip folder, so it cannot resolve outside the checkpoint's folder."""
    ckpt = tmp_path / "work" / "exp" / "variant" / "best.pth"
    for clip_id in ("../../../../../tmp/x", "/etc/passwd", "a/b", "plain_id"):
        out = default_out_dir(ckpt, clip_id)
        assert out.parent == ckpt.parent and Path(out.name).name == out.name and out.name.startswith("explain_")
        assert out.resolve().parent == ckpt.parent.resolve()
    assert default_out_dir(ckpt, "plain_id").name == "explain_plain_id"
