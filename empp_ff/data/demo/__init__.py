"""Small bundled demo dataset: aspirin, MD17 schema, GFN2-xTB labels.

``aspirin_demo.npz`` is a short 500 K Langevin trajectory of aspirin labelled
with GFN2-xTB (tblite).  It is *not* the published MD17 data; see README.md in
this folder.  Regenerate it with ``python -m empp_ff.data.demo.make_demo_data``
(needs ``pip install tblite``, which is not an empp-ff dependency).

Importing this module is cheap: it only touches :mod:`pathlib`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_DATA", "DEMO_PROVENANCE", "demo_data_path"]

DEMO_DATA = Path(__file__).with_name("aspirin_demo.npz")
DEMO_PROVENANCE = Path(__file__).with_name("aspirin_demo.json")


def demo_data_path() -> Path:
    """Return the path of the bundled aspirin demo ``.npz`` (MD17 schema).

    Raises
    ------
    FileNotFoundError
        If the file is missing (e.g. an install that dropped package data).
    """
    if not DEMO_DATA.is_file():
        raise FileNotFoundError(
            f"Demo dataset not found at {DEMO_DATA}. It should ship with empp-ff "
            "(check that package data is installed), or regenerate it with: "
            "pip install tblite && OMP_NUM_THREADS=1 python -m "
            "empp_ff.data.demo.make_demo_data --out " + str(DEMO_DATA)
        )
    return DEMO_DATA
