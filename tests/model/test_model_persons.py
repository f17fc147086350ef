"""Several people per frame on the model side: PeVL and PGVT embed J = j x n joints (one embedding
per joint index, PGVT Sec. 4), UCMR's weighted mask covers every person's joints, and
``pose.normalize='person'`` takes each person on its own."""
import pytest
import torch

from pevl_model_testutils import TINY, make_batch
from stages.model import build_model
from stages.model.pose_embedding import normalize_to_person
from stages.settings import SettingsError

J, N = 2 * 17, 2


@pytest.mark.parametrize("kind", ["PeVL", "PGVT"])
def test_pose_embedding_over_j_times_n_joints(kind):
    torch.manual_seed(0)
    m = build_model({"type": kind, **TINY, "num_classes": 2, "num_joints": J, "num_persons": N})
    if kind == "PeVL":
        m.set_class_texts(["back dive", "forward dive"], "diving")
    batch = make_batch(b=2, v=J)
    embed = m.pose_encoder.embed if kind == "PeVL" else m.pose_embed
    assert embed.joint_pos.shape[0] == J and embed.persons == N
    tokens = embed(batch["joints"])
    assert tokens.shape[:3] == (2, 8, 1 + J)  # each pose frame: its CLS token and all people's joints
    m.train()
    loss = m.loss(batch)["loss"]
    loss.backward()
    # both people's joint embeddings learn (the second person's indices 17..33 too)
    g = embed.joint_pos.grad
    assert g is not None and g[:17].abs().sum() > 0 and g[17:].abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert m.predict(batch).shape == (2, m.cfg["num_classes"])
        if kind == "PeVL":
            out = m.encode(batch)
            assert out["joint_weights"].shape == (2, 8, J)  # UCMR's joint weights: every person's joints


def test_a_batch_of_one_person_is_refused_by_a_two_person_model():
    m = build_model({"type": "PGVT", **TINY, "num_joints": J, "num_persons": N}).eval()
    with pytest.raises(ValueError, match=r"17 joints per frame but the pose embedding has 34 \(2 people's"):
        m.predict(make_batch(b=1, v=17))


def test_joints_must_split_into_the_people():
    with pytest.raises(SettingsError, match="num_joints = 35 is not a whole number of joints for each of "
                                            "num_persons = 2"):
        build_model({"type": "PeVL", **TINY, "num_joints": 35, "num_persons": 2})


def test_person_normalisation_is_per_person():
    torch.manual_seed(0)
    a, b = torch.rand(2, 4, 17, 3), torch.rand(2, 4, 17, 3) * 0.2 + 0.7  # two people apart
    both = torch.cat([a, b], dim=2)
    out = normalize_to_person(both, persons=2)
    torch.testing.assert_close(out[:, :, :17], normalize_to_person(a))
    torch.testing.assert_close(out[:, :, 17:], normalize_to_person(b))
    assert not torch.allclose(normalize_to_person(both), out)  # as one "person" it would differ
    m = build_model({"type": "PGVT", **TINY, "num_joints": J, "num_persons": N,
                     "pose": {"normalize": "person"}}).eval()
    with torch.no_grad():
        assert torch.isfinite(m.predict(make_batch(b=2, v=J))).all()
