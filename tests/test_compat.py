"""Import guards (stages/compat.py): mmpose's top-down inference imports where xtcocotools is missing."""
import subprocess
import sys

from pevl_testutils import REPO

WITHOUT_XTCOCOTOOLS = r'''
import sys
import importlib.abc


class _NotInstalled(importlib.abc.MetaPathFinder):  # as where it could not be built
    def find_spec(self, name, path=None, target=None):
        if name == "xtcocotools" or name.startswith("xtcocotools."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
from stages.compat import ensure_mmpose
ensure_mmpose()
import mmpose.apis  # imports xtcocotools.coco and .cocoeval through its datasets and metrics
from mmpose.apis import init_model  # noqa: F401
import xtcocotools.mask
from xtcocotools.coco import COCO
try:
    COCO("annotations.json")
except RuntimeError as e:
    print("REFUSED", e)
print("STUB", type(sys.modules["xtcocotools"]).__name__, xtcocotools.mask is sys.modules["xtcocotools.mask"])
'''

BROKEN_INSIDE = r'''
import sys


class _BrokenInside:  # the package is there, its compiled part is not (an ABI mismatch, say)
    def find_spec(self, name, path=None, target=None):
        if name == "xtcocotools":
            raise ModuleNotFoundError("No module named 'xtcocotools._mask'", name="xtcocotools._mask")


sys.meta_path.insert(0, _BrokenInside())
from stages.compat import ensure_mmpose
try:
    ensure_mmpose()
except ModuleNotFoundError as e:
    print("RAISED", e.name)
'''


def test_mmpose_imports_without_xtcocotools_and_its_use_says_why():
    res = subprocess.run([sys.executable, "-c", WITHOUT_XTCOCOTOOLS], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "REFUSED xtcocotools.coco.COCO: xtcocotools is not installed" in res.stdout
    assert "top-down pose inference does not" in res.stdout and "STUB _Missing True" in res.stdout


def test_an_installed_xtcocotools_is_left_alone():
    code = ("from stages.compat import ensure_mmpose; ensure_mmpose(); import xtcocotools.coco as c; "
            "print(type(c).__name__, c.COCO.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["module", "xtcocotools.coco"]


def test_an_xtcocotools_broken_inside_is_not_stood_in_for():
    res = subprocess.run([sys.executable, "-c", BROKEN_INSIDE], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["RAISED", "xtcocotools._mask"]
