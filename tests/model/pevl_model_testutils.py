import logging

import torch

from stages.compat import ensure_torchvision

ensure_torchvision()
logging.getLogger().setLevel(logging.ERROR)

TINY = dict(clip=dict(arch="PeVL-tiny", pretrained=None), num_pose_frames=8, num_video_frames=4)


def make_batch(b=3, tv=4, t=8, v=17, s=112, g=7, labels=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    joints = torch.rand(b, t, v, 3, generator=gen)
    idx = torch.linspace(0, t - 1, tv).long().expand(b, tv).contiguous()
    grid = torch.zeros(b, tv, v, g, g)
    sel = torch.gather(joints, 1, idx[..., None, None].expand(b, tv, v, 3))
    cx = (sel[..., 0] * g).long().clamp(0, g - 1)
    cy = (sel[..., 1] * g).long().clamp(0, g - 1)
    bi, ti, vi = torch.meshgrid(torch.arange(b), torch.arange(tv), torch.arange(v), indexing="ij")
    grid[bi, ti, vi, cy, cx] = sel[..., 2]
    return dict(
        frames=torch.randn(b, tv, 3, s, s, generator=gen),
        joints=joints,
        video_pose_index=idx,
        mask_grid=grid,
        label=torch.tensor(labels if labels is not None else [i % 2 for i in range(b)]),
    )


# PGVT's experiments (their variants are checked in test_model_pgvt.py; PeVL's rows in test_model_variants.py)
PGVT_EXPERIMENTS = ["pgvt_components", "pgvt_pose_form", "pgvt_pose_encoder"]
# the papers' state-of-the-art tables, one row per backbone (checked in tests/train/test_backbone_tables.py)
BACKBONE_TABLES = ["table1_diving48", "table2_gym99", "table2_gym288", "table3_haa500", "table3_toyota_smarthome",
                   "pgvt_table1_diving48", "pgvt_table2_gym99", "pgvt_table2_gym288", "supp_table2_kinetics400",
                   "pgvt_table3_kinetics400"]
