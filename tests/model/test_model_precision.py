"""One training step of the tiny PeVL under float16 and bfloat16 autocast (CPU): finite gradients
and losses within 1% of float32 (the mask, similarities, coefficients and losses run in float32)."""
import pytest
import torch

from pevl_model_testutils import make_batch
from stages.model import build_model


def _step(model, batch, dtype=None):
    model.zero_grad(set_to_none=True)
    if dtype is None:
        out = model.loss(batch)
    else:
        with torch.autocast("cpu", dtype=dtype):
            out = model.loss(batch)
    out["loss"].backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_tunable_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in out.items()}, grads


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_one_step_under_autocast_is_finite_and_close_to_fp32(tiny_cfg, dtype):
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_class_texts(["back dive", "forward dive pike", "inward dive"], "diving")
    model.train()
    for mod in model.modules():  # zero-initialised layers made non-zero: every path carries signal
        for name in ("fc2", "out"):
            lin = getattr(mod, name, None)
            if isinstance(lin, torch.nn.Linear) and not lin.weight.abs().sum():
                torch.nn.init.normal_(lin.weight, std=0.05)
    batch = make_batch()
    batch["mask_grid"][0, 1] = 0  # a video frame whose crop holds no joint (fp16 underflowed here)
    ref, _ = _step(model, batch)
    got, grads = _step(model, batch, dtype)
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    for k in ("loss", "loss_t", "loss_r"):
        assert got[k] == pytest.approx(ref[k], rel=0.01), (k, got[k], ref[k])
