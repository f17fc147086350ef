"""Ships ``configs/`` inside the package, as mmaction2 ships its configs (``mmaction/.mim``), and
the source's git revision (``cache/build_revision.txt``: what entries' provenance and
``pipeline --version`` say without a checkout).

Everything else is declared in pyproject.toml. The experiment and base configs live at the
repository's top level, outside the three packages, so a non-editable install (``pip install .``,
``pip install git+URL``, a wheel) would carry none of them and know no experiment. The build copies
the folder to ``stages/bundled/configs``, where :func:`stages.train.config.configs_root` looks when
there is no repository beside the code. An editable install reads the repository's own folder.
"""
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: where the copy goes inside the built packages (stages.train.config.BUNDLED_CONFIGS names the same)
BUNDLED = ("stages", "bundled", "configs")
#: where the revision goes (cache.provenance.BUILD_REVISION names the same)
REVISION = ("cache", "build_revision.txt")


def source_revision(src: Path):
    """``abc1234`` (``-dirty`` with uncommitted changes) of the source tree, None outside a checkout."""
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)
    except OSError:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else None


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        here = Path(__file__).resolve().parent
        dst = Path(self.build_lib).joinpath(*BUNDLED)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(here / "configs", dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        rev = source_revision(here)
        if rev:
            Path(self.build_lib).joinpath(*REVISION).write_text(rev + "\n")


setup(cmdclass={"build_py": BuildPyWithConfigs})
