"""Ships ``configs/`` inside the package, as mmaction2 ships its configs (``mmaction/.mim``).

Everything else is declared in pyproject.toml. The experiment and base configs live at the
repository's top level, outside the three packages, so a non-editable install (``pip install .``,
``pip install git+URL``, a wheel) would carry none of them and know no experiment. The build copies
the folder to ``stages/bundled/configs``, where :func:`stages.train.config.configs_root` looks when
there is no repository beside the code. An editable install reads the repository's own folder.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: where the copy goes inside the built packages (stages.train.config.BUNDLED_CONFIGS names the same)
BUNDLED = ("stages", "bundled", "configs")


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        src = Path(__file__).resolve().parent / "configs"
        dst = Path(self.build_lib).joinpath(*BUNDLED)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
