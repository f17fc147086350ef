"""A non-editable install (``pip install .``, ``pip install git+URL``, a wheel) carries the configs.

The wheel is built from a copy of the project's files (pip builds in the source folder), unpacked and
imported from another folder, as an installed package is: every experiment must be there and load.
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stages.train.config import configs_root

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "cache", "stages", "pipeline", "configs")


def _config_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.py") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in PROJECT_FILES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(
            REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir() else {}))
    # a checkout of its own: the wheel records its revision
    git = ["git", "-c", "user.email=test@example.org", "-c", "user.name=test", "-C", str(src)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "packaging test"]):
        subprocess.run(git + args, check=True, capture_output=True)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist)], check=True, cwd=src, capture_output=True)
    (wheel,) = dist.glob("*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_wheel_carries_every_config(unpacked_wheel):
    bundled = unpacked_wheel / "stages" / "bundled" / "configs"
    assert _config_files(bundled) == _config_files(configs_root())
    assert not list(bundled.rglob("__pycache__"))


LOAD_ALL = ("import json, sys\n"
            "from stages.train.config import configs_root, experiment_names, load_experiment\n"
            "print(configs_root())\n"
            "print(json.dumps({n: load_experiment(n).to_dict() for n in experiment_names()}, sort_keys=True, default=str))\n")


def test_installed_package_finds_and_loads_every_experiment(unpacked_wheel, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PEVL_CONFIGS"}
    env["PYTHONPATH"] = str(unpacked_wheel)
    installed = subprocess.run([sys.executable, "-c", LOAD_ALL], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    root, experiments = installed.stdout.splitlines()[-2:]
    assert Path(root) == unpacked_wheel / "stages" / "bundled" / "configs"
    here = subprocess.run([sys.executable, "-c", LOAD_ALL], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    assert Path(here.stdout.splitlines()[-2]) == configs_root()
    assert json.loads(experiments) == json.loads(here.stdout.splitlines()[-1])
    assert "demo" in json.loads(experiments)


def test_installed_package_says_its_version_and_the_revision_it_was_built_from(unpacked_wheel, tmp_path):
    rev = (unpacked_wheel / "cache" / "build_revision.txt").read_text().strip()
    assert len(rev) >= 7 and not rev.endswith("-dirty")
    env = {k: v for k, v in os.environ.items() if k != "PEVL_CONFIGS"}
    env["PYTHONPATH"] = str(unpacked_wheel)
    out = subprocess.run([sys.executable, "-m", "pipeline", "--version"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0 and f"(git {rev} (built)), store format" in out.stdout, out.stdout + out.stderr
