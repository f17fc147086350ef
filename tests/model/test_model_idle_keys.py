"""Keys other switches leave idle (``idle_keys``) build the same model whatever their value, and a
key that is not idle does not; the types that fix switches (Table 4's baseline, the text-free
rows) resolve them into the config that is checked, printed and saved."""
import pytest
import torch

from pevl_model_testutils import TINY, make_batch
from stages.model import build_model
from stages.model.factory import BASELINE_SWITCHES, model_settings
from stages.nested_config import deep_merge
from stages.train.config import idle_overrides

TEXTS = ["back dive", "forward dive pike", "inward dive", "reverse dive tuck"]


def _nested(dotted: str, value) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _outputs(cfg: dict) -> tuple[dict, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    m = build_model(cfg)
    if hasattr(m, "set_class_texts"):
        m.set_class_texts(TEXTS, "diving")
    m.train()
    torch.manual_seed(1)
    batch = make_batch(b=4, labels=[0, 1, 2, 3])
    loss = m.loss(batch)["loss"]
    m.eval()
    return m.state_dict(), loss.detach(), m.predict(batch)


def _same_model(a: dict, b: dict) -> bool:
    (sa, la, pa), (sb, lb, pb) = _outputs(a), _outputs(b)
    return (sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
            and torch.equal(la, lb) and torch.equal(pa, pb))


PEVL = dict(TINY, num_classes=4)
PGVT = dict(TINY, num_classes=4, type="PGVT")
IDLE = [  # (the config, a key it leaves idle, another value)
    (dict(PEVL, fusion="concat"), "sgmc.loss", "vanilla"),
    (dict(PEVL, fusion="concat"), "sgmc.fw_temperature", 0.5),
    (dict(PEVL, type="LinearHeadPeVL"), "text.prompt", "label"),
    (dict(PEVL, type="LinearHeadPeVL"), "temperature.text_init", 50.0),
    (dict(PEVL, modalities=["video", "text"], sgmc=dict(sims=["vs"])), "ucmr.num_blocks", 2),
    (dict(PEVL, modalities=["video", "text"], sgmc=dict(sims=["vs"])), "pose.motion", True),
    (dict(PEVL, pose=dict(form="heatmap")), "pose.normalize", "person"),
    (PEVL, "pose.heatmap_sigma", 4.0),
    (PEVL, "pose.poseformer.depth", 2),
    (dict(PEVL, ucmr=dict(num_blocks=0)), "ucmr.p2v", False),
    (dict(PEVL, ucmr=dict(refine_loss=False)), "lambda_r", 0.5),
    (dict(PGVT, blocks="aim"), "pgvt.temporal", False),
    (PGVT, "aim.temporal", False),
    (dict(PGVT, pose=dict(form="heatmap")), "pose.motion", True),
]
ACTIVE = [  # the same keys where they act: the comparison sees a difference
    # (without text, eq. 3's temperature still reads the clamp: UCMR's refinement loss)
    (dict(PEVL, type="LinearHeadPeVL", temperature=dict(text_init=150.0)), "temperature.max_scale", 5.0),
    (PEVL, "sgmc.loss", "vanilla"),
    (PEVL, "pose.motion", True),
    (PEVL, "ucmr.num_blocks", 2),
    (dict(PGVT, blocks="aim"), "aim.temporal", False),
]


@pytest.mark.parametrize("cfg,key,value", IDLE, ids=[f"{c.get('type', 'PeVL')}-{k}" for c, k, _ in IDLE])
def test_an_idle_key_is_listed_and_builds_the_same_model(cfg, key, value):
    run = {"model": model_settings(cfg).to_dict()}
    assert f"model.{key}" in idle_overrides(run, {f"model.{key}": value})
    assert _same_model(cfg, deep_merge(cfg, _nested(key, value)))


@pytest.mark.parametrize("cfg,key,value", ACTIVE, ids=[f"{c.get('type', 'PeVL')}-{k}" for c, k, _ in ACTIVE])
def test_a_key_that_acts_is_not_listed_and_changes_the_model(cfg, key, value):
    run = {"model": model_settings(cfg).to_dict()}
    assert idle_overrides(run, {f"model.{key}": value}) == {}
    assert not _same_model(cfg, deep_merge(cfg, _nested(key, value)))


def test_the_baseline_and_text_free_types_resolve_their_switches_into_the_config():
    full = dict(PEVL, ucmr=dict(num_blocks=3), adapters=dict(video=True), fusion="sgmc")
    base = model_settings(dict(full, type="CLIPBaseline")).to_dict()
    assert base["modalities"] == ["video", "text"] and base["ucmr"]["num_blocks"] == 0
    assert base["adapters"]["video"] is False and base["fusion"] == "concat" and base["sgmc"]["loss"] == "vanilla"
    assert base == model_settings(base).to_dict()  # resolved once, the same again
    built = build_model(dict(full, type="CLIPBaseline"))
    assert len(built.ucmr) == 0 and built.pose_encoder is None and built.fusion_mode == BASELINE_SWITCHES["fusion"]
    linear = model_settings(dict(PEVL, type="LinearHeadPeVL")).to_dict()
    assert linear["modalities"] == ["video", "pose"]
    # a -c value the type fixes otherwise changes nothing: said; the value it fixes is not
    run = {"model": base}
    why = idle_overrides(run, {"model.ucmr.num_blocks": 2, "model.fusion": "concat"})
    assert list(why) == ["model.ucmr.num_blocks"] and "CLIPBaseline" in why["model.ucmr.num_blocks"]
    assert "model.modalities" in idle_overrides({"model": linear}, {"model.modalities": ["video", "pose", "text"]})
