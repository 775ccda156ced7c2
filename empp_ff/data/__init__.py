"""Data layer: format readers (units -> eV, Å, eV/Å), the ragged HDF5 store,
splits, statistics (E0s, shift/scale, neighbour counts) and the torch
dataset/loader. Graphs come from :mod:`empp_ff.neighbours`, shared with inference.

Names are resolved lazily so ``import empp_ff.data`` pulls in neither torch nor ase.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Structure": "empp_ff.data.structure",
    "read_structures": "empp_ff.data.readers",
    "detect_format": "empp_ff.data.readers",
    "FORMATS": "empp_ff.data.readers",
    "write_store": "empp_ff.data.store",
    "StructureStore": "empp_ff.data.store",
    "convert": "empp_ff.data.conversion",
    "make_splits": "empp_ff.data.splits",
    "save_splits": "empp_ff.data.splits",
    "load_splits": "empp_ff.data.splits",
    "fit_e0s": "empp_ff.data.statistics",
    "compute_statistics": "empp_ff.data.statistics",
    "neighbour_graph": "empp_ff.neighbours",
    "GraphDataset": "empp_ff.data.dataset",
    "make_loader": "empp_ff.data.dataset",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'empp_ff.data' has no attribute {name!r}")
