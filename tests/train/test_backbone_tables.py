"""The papers' state-of-the-art tables with their ViT-B/16 and ViT-L/14 rows: each row builds the
model it names on the backbone it names, reads a cache entry on that backbone's patch grid, and
the paper's numbers sit beside it."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from pevl_model_testutils import BACKBONE_TABLES  # noqa: E402
from stages.data.entry_lookup import extract_command  # noqa: E402
from stages.train.config import build_run_config, list_variants, load_experiment  # noqa: E402

PAPER = {  # (table, dataset, model type, {variant: paper top-1})
    "table1_diving48": ("Table 1", "diving48", "PeVL", {"vit_b16": 91.9, "vit_l14": 92.5}),
    "table2_gym99": ("Table 2", "gym99", "PeVL", {"vit_b16": 96.5, "vit_l14": 97.0}),
    "table2_gym288": ("Table 2", "gym288", "PeVL", {"vit_b16": 90.5, "vit_l14": 91.8}),
    "table3_haa500": ("Table 3", "haa500", "PeVL", {"vit_b16": 84.3, "vit_l14": 84.7}),
    "table3_toyota_smarthome": ("Table 3", "toyota_smarthome", "PeVL", {"vit_b16": None, "vit_l14": None}),
    "pgvt_table1_diving48": ("PGVT Table 1", "diving48", "PGVT", {"vit_b16": 89.5, "vit_l14": 91.3}),
    "pgvt_table2_gym99": ("PGVT Table 2", "gym99", "PGVT", {"vit_b16": 96.1, "vit_l14": 96.7}),
    "pgvt_table2_gym288": ("PGVT Table 2", "gym288", "PGVT", {"vit_b16": 90.7, "vit_l14": 91.0}),
    "supp_table2_kinetics400": ("Supp. Table 2", "kinetics400", "PeVL", {"vit_b16": 86.0, "vit_l14": 89.5}),
    "pgvt_table3_kinetics400": ("PGVT Table 3", "kinetics400", "PGVT", {"vit_b16": 85.8, "vit_l14": 89.2}),
}
#: the rows with their own frame counts (pose + video, and the frames the entry caches)
FRAMES = {"supp_table2_kinetics400": 32, "pgvt_table3_kinetics400": 32}
PATCH = {"vit_b16": ("ViT-B-16", 16), "vit_l14": ("ViT-L-14", 14)}


def test_every_backbone_table_is_listed():
    assert sorted(PAPER) == sorted(BACKBONE_TABLES)


@pytest.mark.parametrize("name", BACKBONE_TABLES)
def test_each_row_names_its_backbone_grid_and_paper_number(name):
    table, dataset, model_type, top1 = PAPER[name]
    exp = load_experiment(name)
    assert exp.experiment.table == table and list_variants(exp) == ["vit_b16", "vit_l14"]
    for variant, (arch, patch) in PATCH.items():
        for ds in (None, dataset):  # the experiment's own dataset, and --dataset naming it
            cfg = build_run_config(name, variant, dataset=ds)
            assert cfg.model.type == model_type and cfg.model.clip.arch == arch
            assert cfg.model.clip.pretrained == "openai" and cfg.paper_top1 == top1[variant]
            assert cfg.data.dataset == dataset and cfg.data.extract.grid_cell == patch
            cmd = extract_command(cfg.data.to_dict())  # flags for what differs from the defaults
            assert f"--dataset {dataset}" in cmd and (f"--grid-cell {patch}" in cmd) is (patch != 16)
            frames = FRAMES.get(name)
            if frames:  # Kinetics-400: 32 + 32, from an entry of 32 frames
                assert cfg.model.num_pose_frames == cfg.model.num_video_frames == frames
                assert cfg.data.extract.num_frames == frames and f"--num-frames {frames}" in cmd
                assert cfg.data.test_split == "val" and cfg.model.num_classes == 400


@pytest.mark.parametrize("name", ["table1_diving48", "pgvt_table1_diving48"])
def test_the_vit_l14_row_builds_vit_l14_towers(name):
    """Built on the meta device (no weights): 24 blocks of width 1024, 14-pixel patches, 224 px."""
    from stages.model import build_model

    cfg = build_run_config(name, "vit_l14")
    m = dict(cfg.model.to_dict(), num_classes=48)
    m["clip"] = dict(m["clip"], pretrained=None)
    with torch.device("meta"):
        model = build_model(m)
    vis = model.clip.visual
    assert len(vis.transformer.resblocks) == 24 and vis.conv1.out_channels == 1024
    assert tuple(vis.patch_size) == (14, 14) and tuple(vis.image_size) == (224, 224)
