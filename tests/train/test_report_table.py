"""The results table says what the paper's table reports: its metric, its mean class accuracy where
the paper gives one (Toyota-Smarthome gives only that), and the test views the rows were measured with."""
import json

from stages.train.config import load_experiment
from stages.train.report import write_results
from stages.train.sweep import VariantOutcome, collect_rows


def _result(vdir, **row):
    vdir.mkdir(parents=True)
    base = dict(variant=vdir.name, dataset="toyota_smarthome", num_classes=31, top1=80.0, top5=95.0,
                mean_class_acc=70.5, tunable_params_m=1.0, gflops=None, epochs=50, status="done",
                test_views="resize_three_crop", arch="ViT-B-16")
    (vdir / "result.json").write_text(json.dumps({**base, **row}))


def test_a_mean_class_table_compares_with_the_papers_mean_class(tmp_path):
    exp = load_experiment("table3_toyota_smarthome")
    _result(tmp_path / "vit_b16")
    rows = collect_rows(exp, tmp_path, [VariantOutcome("vit_l14", "failed", tmp_path / "vit_l14", error="x")])
    assert [(r["variant"], r["paper_mean_class_acc"]) for r in rows] == [("vit_b16", 73.3), ("vit_l14", 73.8)]
    write_results(tmp_path, rows, dict(exp["experiment"]), [])
    md = (tmp_path / "results.md").read_text()
    assert "on Toyota Smarthome (mean class accuracy %)" in md and "(Top-1 %)" not in md
    assert "3 crops x 1 clip (short side resized to the crop, AIM's)" in md
    head = next(line for line in md.splitlines() if line.startswith("| variant"))
    assert "| mean class | mean class (paper) |" in head
    assert "| vit_b16 | 80.0 | - | 95.0 | 70.5 | 73.3 |" in md
    assert md.count("|", md.index("| vit_l14")) >= head.count("|")  # the failed row spans the table


def test_a_top1_table_of_a_paper_with_mean_class_numbers_shows_both(tmp_path):
    exp = load_experiment("table2_gym99")
    _result(tmp_path / "vit_b16", dataset="gym99", test_views="three_crop", paper_top1=96.5)
    rows = collect_rows(exp, tmp_path, [])
    write_results(tmp_path, rows, dict(exp["experiment"]), [])
    md = (tmp_path / "results.md").read_text()
    assert "on Gym99 (Top-1 %, and mean class accuracy %)" in md and "(of the cached frames)" in md
    assert "| vit_b16 | 80.0 | 96.5 | 95.0 | 70.5 | 91.6 |" in md


def test_the_papers_top5_params_and_gflops_are_shown_where_its_table_gives_them(tmp_path):
    """paper_top5 was stated by PGVT's tables and never shown, and every table said "the paper's
    numbers are for ViT-B/16, 16 + 48 frames", wrong for ViT-L/14, K400 and PGVT rows alike."""
    exp = load_experiment("table7_modalities")
    variant = next(iter(exp["variants"]))
    _result(tmp_path / variant, dataset="diving48", gflops=1.5)
    rows = collect_rows(exp, tmp_path, [])
    write_results(tmp_path, rows, dict(exp["experiment"]), [])
    md = (tmp_path / "results.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| variant"))
    assert "| tunable params (M) | params (M, paper) | GFLOPs | GFLOPs (paper) |" in head
    want = exp["variants"][variant]
    assert f"| 1.00 | {want['paper_params_m']} | 1.50 | {want['paper_gflops']} |" in md
    assert "16 + 48 frames" not in md and "the paper's at its own" in md
    exp = load_experiment("pgvt_components")
    _result(tmp_path / "p" / "pose_only", dataset="diving48")
    write_results(tmp_path / "p", collect_rows(exp, tmp_path / "p", []), dict(exp["experiment"]), [])
    md = (tmp_path / "p" / "results.md").read_text()
    assert "| top-5 | top-5 (paper) |" in md and "| 95.0 | 96.7 |" in md
    # no paper GFLOPs: no such column and no word of the paper's
    exp = load_experiment("table2_gym99")
    _result(tmp_path / "g" / "vit_b16", dataset="gym99")
    write_results(tmp_path / "g", collect_rows(exp, tmp_path / "g", []), dict(exp["experiment"]), [])
    md = (tmp_path / "g" / "results.md").read_text()
    assert "GFLOPs (paper)" not in md and "top-5 (paper)" not in md and "the paper's at its own" not in md
