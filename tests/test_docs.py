"""What the README, docs/ and the configs' comments tell a researcher to type is what the code takes:
every setting they write as ``key=value`` (``-c``, ``--cfg-options``) is a setting of the run config
(two such keys had been renamed under the docs: ``data.pose_config``, ``train.random_pose_offsets``)."""
import re
from pathlib import Path

import pytest

from stages.train.config import build_run_config

REPO = Path(__file__).resolve().parents[1]
#: ``group.key=`` where the group is one of the run config's (not ``train.csv``, ``model.train()``)
ASSIGNED = re.compile(r"(?<![\w./-])((?:train|data|model)(?:\.[a-z_][a-z0-9_]*)+)=")
#: dicts whose keys the code does not declare here (pose sources' and datasets' own options,
#: checked against their schemas when a run builds them)
FREE_FORM = ("data.pose_options", "data.dataset_options", "model.init_from")


@pytest.fixture(scope="module")
def run_configs() -> list[dict]:
    """Resolved configs that hold every setting group: PeVL, PGVT, and the demo's overlay."""
    return [build_run_config(exp, variant).to_dict()
            for exp, variant in (("ucmr_ablate", "pevl"), ("pgvt_components", "pgvt"), ("demo", "pevl"))]


def _known(key: str, configs: list[dict]) -> bool:
    if any(key == f or key.startswith(f + ".") for f in FREE_FORM):
        return True
    for cfg in configs:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return True
    return False


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "configs").rglob("*.py"))]


def test_the_documents_are_found():
    names = {p.name for p in _documents()}
    assert {"README.md", "training.md", "demo.md", "install.md", "ucmr_ablate.py"} <= names


def test_every_setting_the_documents_assign_is_one_the_code_takes(run_configs):
    seen, unknown = set(), []
    for path in _documents():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if path.suffix == ".py" and not line.lstrip().startswith("#"):
                continue  # configs: their comments (the code itself is loaded by the config tests)
            for key in ASSIGNED.findall(line):
                seen.add(key)
                if not _known(key, run_configs):
                    unknown.append(f"{path.relative_to(REPO)}:{n}: {key}")
    assert len(seen) > 20  # the scan reads what the documents say (30 keys when written)
    assert not unknown, "settings the code does not take:\n" + "\n".join(unknown)


def test_a_renamed_key_would_be_found(run_configs):
    assert not _known("train.random_pose_offsets", run_configs) and _known("data.random_pose_offsets", run_configs)
    assert not _known("data.pose_config", run_configs) and _known("data.pose_options.config", run_configs)
    assert ASSIGNED.findall("`-c data.test_split=val train.lr=1e-4`, train.csv, model.train()") == \
        ["data.test_split", "train.lr"]
