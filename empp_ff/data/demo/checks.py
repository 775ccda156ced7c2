"""Checks and fingerprints of the demo data: the sGDML md5, the covalent bond
graph (did the molecule stay intact?) and finite differences of the GFN2-xTB
energy against its forces. Used by :mod:`empp_ff.data.demo.make_demo_data`."""

from __future__ import annotations

import hashlib

import numpy as np


def sgdml_md5(data: dict) -> str:
    """sGDML dataset fingerprint.

    MD5 over the concatenated MD5 digests of ``z``, ``R``, ``E``, ``F`` (each
    flattened, in that order), as in ``sgdml.utils.io.dataset_md5``.  Like
    sGDML (and the shared MD17 look-alikes) the *binary* 16-byte digests are
    concatenated; the result is returned as a hex string.
    """
    h = hashlib.md5()
    for key in ("z", "R", "E", "F"):
        arr = np.ascontiguousarray(data[key]).ravel()
        h.update(hashlib.md5(arr).digest())
    return h.hexdigest()


def bond_graph(numbers: np.ndarray, positions: np.ndarray, scale: float = 1.25) -> np.ndarray:
    """Boolean adjacency: bonded if d_ij < scale * (r_cov,i + r_cov,j)."""
    from ase.data import covalent_radii

    r = covalent_radii[numbers]
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    adj = d < scale * (r[:, None] + r[None, :])
    np.fill_diagonal(adj, False)
    return adj


def make_calc(accuracy: float = 1.0):
    try:
        from tblite.ase import TBLite
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise SystemExit(
            "tblite is required to regenerate the demo data: pip install tblite"
        ) from exc
    return TBLite(method="GFN2-xTB", accuracy=accuracy, verbosity=0)


def finite_difference_check(numbers, positions, forces_stored, n_components=8, h=2.5e-4,
                            accuracy=0.01, seed=0):
    """Central finite differences of the GFN2-xTB energy vs forces (kcal/mol/Å).

    A fresh calculator with tight SCC convergence (tblite ``accuracy=0.01``) is
    used: with the default accuracy (1.0) the SCC noise in the energy limits
    any finite-difference check to ~2e-3 kcal/mol/Å.  With ``accuracy=0.01``
    the discrepancy shrinks as h**2 (7e-5 at h = 2.5e-4 Å in tests), so the
    analytic forces are the exact gradient.  Reports FD vs the tight analytic
    forces, FD vs the stored (MD, default-accuracy) forces on the checked
    components, and stored vs tight analytic forces over all components.
    """
    from ase import Atoms, units

    kcal = units.kcal / units.mol
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = make_calc(accuracy)
    f_an = atoms.get_forces() / kcal
    rng = np.random.default_rng(seed)
    atoms_idx = rng.choice(len(numbers), n_components, replace=False)
    comps = [(int(i), int(k)) for i, k in zip(atoms_idx, rng.integers(0, 3, n_components))]
    rows = []
    for i, k in comps:
        e = []
        for sgn in (+1, -1):
            p = positions.copy()
            p[i, k] += sgn * h
            atoms.positions = p
            e.append(atoms.get_potential_energy() / kcal)
        f_fd = -(e[0] - e[1]) / (2 * h)
        rows.append({"atom": i, "xyz": k, "F_fd": float(f_fd),
                     "F_analytic_tight": float(f_an[i, k]),
                     "F_stored": float(forces_stored[i, k])})
    return {
        "h_A": h, "tblite_accuracy": accuracy, "components": rows,
        "max_abs_fd_vs_analytic_tight": max(abs(r["F_fd"] - r["F_analytic_tight"]) for r in rows),
        "max_abs_fd_vs_stored": max(abs(r["F_fd"] - r["F_stored"]) for r in rows),
        "max_abs_stored_vs_analytic_tight_all_components": float(np.abs(f_an - forces_stored).max()),
        "units": "kcal/mol/Angstrom",
    }
