"""stages/torch_files.py: a weight file is whole before torch.load trusts it."""
import hashlib

import pytest
import torch

from stages.torch_files import name_hash_problem, zip_problem


@pytest.mark.parametrize("name, checked", [
    ("hrnet_w32_coco_256x192-{sha}_20200708.pth", True),  # mmpose 0.x
    ("td-hm_hrnet-w32_8xb64-210e_coco-256x192-{sha}_20220909.pth", True),  # mmpose 1.x
    ("faster_rcnn_r50_fpn_1x_coco_20200130-{sha}.pth", True),  # mmdet
    ("mask_rcnn_r50_fpn_1x_coco_20200504_210434-{sha}.pth", True),  # mmdet, with a time
    ("hrnet_finetuned-20240315.pth", False),  # a lab's own, named by its date (eight digits are hex too)
    ("best_coco_AP_epoch_210.pth", False)])
def test_release_names_are_checked_and_others_are_not(name, checked):
    sha = hashlib.sha256(b"weights").hexdigest()
    assert name_hash_problem(name.format(sha=sha[:8]), sha) is None
    wrong = name_hash_problem(name.format(sha="0badc0de"), sha)
    assert (wrong is not None) == (checked and "{sha}" in name), wrong


def test_zip_members_crcs(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, path)
    assert zip_problem(path) is None and zip_problem(path.read_bytes()) is None
    data = bytearray(path.read_bytes())
    at = data.index(torch.arange(1000, dtype=torch.float32).numpy().tobytes()[400:408])
    data[at] ^= 1
    assert zip_problem(bytes(data)).startswith("damaged: the CRC of member")
    assert zip_problem(bytes(data[: len(data) // 2])).startswith("a zip archive cut short or damaged")
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    assert zip_problem(legacy) is None  # the older format has no CRCs to check


def test_a_checkpoints_getattr_may_name_only_history_buffer_methods(tmp_path):
    """mmengine's message hub pickles ``getattr(HistoryBuffer, 'mean')`` (protocol 2); a getattr
    naming anything else, here a path from an allowed type to ``os``, is refused."""
    import pickle

    import torch
    from mmengine.logging import MessageHub

    from stages.torch_files import safe_globals

    hub = MessageHub("audit-getattr")
    hub.update_scalar("train/loss", 0.5)
    torch.save({"message_hub": hub.state_dict()}, tmp_path / "ok.pth")
    with safe_globals():
        held = torch.load(tmp_path / "ok.pth", weights_only=True)["message_hub"]["log_scalars"]["train/loss"]
    assert held.mean() == 0.5

    class Reach:
        def __reduce__(self):
            import numpy as np

            return getattr, (np.ndarray, "__init_subclass__")

    torch.save({"x": Reach()}, tmp_path / "bad.pth")
    with safe_globals(), pytest.raises(pickle.UnpicklingError, match=r"getattr\(ndarray, '__init_subclass__'\) is not"):
        torch.load(tmp_path / "bad.pth", weights_only=True)
