import pytest
import torch

from pevl_model_testutils import TINY, make_batch
from stages.train.config import (list_variants, load_experiment, resolve_config_path,
                                  variant_config)
from stages.model import build_model

EXPERIMENTS = ["table4_components", "ucmr_ablate", "table6_similarity", "table7_modalities",
               "table8_adapters", "table9_pose_form", "supp_tattn", "supp_prompt", "supp_num_ucmr"]


def test_experiment_files_have_contract():
    for name in EXPERIMENTS:
        cfg = load_experiment(name)
        assert cfg.experiment.name == name and cfg.experiment.metric == "top1"
        assert cfg.experiment.paper_dataset == "Diving48"
        assert list_variants(cfg)
        assert resolve_config_path(name).name == f"{name}.py"
    assert list_variants(load_experiment("table7_modalities")) == ["v", "p", "vp", "vt", "pt", "vpt", "pevl"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_variant_builds_and_trains_one_step(name):
    cfg = load_experiment(name)
    batch = make_batch(b=2, labels=[0, 1])
    for variant in list_variants(cfg):
        vc = variant_config(cfg, variant, **TINY)
        assert vc.variant == variant
        torch.manual_seed(0)
        m = build_model(vc.model)
        if m.use_text:
            m.set_class_texts(["back dive", "forward dive", "inward dive"], "diving")
        out = m.loss(batch)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]), (name, variant)
        assert any(p.grad is not None for p in m.tunable_parameters()), (name, variant)
        m.eval()
        assert m.predict(batch).shape[0] == 2


def test_base_model_config_states_the_library_defaults():
    """configs/_base_/models/pevl_vit_b16.py and DEFAULT_MODEL_CFG say the same thing: a default
    changed in one place and not the other fails here."""
    from mmengine.config import Config

    from stages.model import DEFAULT_MODEL_CFG
    from stages.nested_config import to_plain
    from stages.train.config import configs_root

    cfg = Config.fromfile(str(configs_root() / "_base_" / "models" / "pevl_vit_b16.py"))
    assert to_plain(cfg.model) == to_plain(DEFAULT_MODEL_CFG)
