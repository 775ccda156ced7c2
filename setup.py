"""Build hook (the project is configured in pyproject.toml).

The LAMMPS pair style's C++ sources live in ``calculators/lammps`` (the product's
"what runs a model file inside an MD engine" folder). Wheels must carry them so
that ``empp-ff lammps build`` works after ``pip install empp-ff``: ``build_py``
copies them into the wheel as ``empp_ff/inference/lammps/csrc/``. Editable
installs skip the copy and build from ``calculators/lammps`` in place (see
``empp_ff/inference/lammps/paths.py:source_dir``). No symlink is involved.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

LAMMPS_SOURCES = Path(__file__).resolve().parent / "calculators" / "lammps"
PATTERNS = ("*.cpp", "*.h", "CMakeLists.txt", "README.md")


class BuildPyWithLammpsSources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "empp_ff" / "inference" / "lammps" / "csrc"
        target.mkdir(parents=True, exist_ok=True)
        for pattern in PATTERNS:
            for source in sorted(LAMMPS_SOURCES.glob(pattern)):
                shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildPyWithLammpsSources})
