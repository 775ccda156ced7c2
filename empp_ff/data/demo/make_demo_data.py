"""Regenerate the aspirin demo dataset (MD17 schema, GFN2-xTB labels).

This script builds ``aspirin_demo.npz``: a short *ab-initio* molecular-dynamics
trajectory of aspirin, labelled with GFN2-xTB (tblite), stored in the MD17 /
sGDML ``.npz`` layout.  It is a small, self-contained demo set; it is **not**
the published MD17 aspirin data (PBE+vdW-TS) and errors on it must not be
compared with literature MAEs.

Recipe (same as the shared reference data, but a different trajectory/seed):

1. Start structure: RDKit ETKDGv3 embedding of ``CC(=O)Oc1ccccc1C(=O)O`` with
   explicit hydrogens and ``randomSeed = seed``.  If RDKit is not installed
   (or ``--start embedded`` is given) a fixed start geometry embedded in this
   file is used instead (it is the RDKit 2026.09 ETKDGv3 conformer for
   seed 7, so both routes coincide for the default seed).
2. Relaxation: GFN2-xTB (``tblite.ase.TBLite``), ASE ``BFGS`` to
   fmax = 0.01 eV/Å.
3. Molecular dynamics: Maxwell-Boltzmann momenta at 500 K drawn from
   ``numpy.random.default_rng(seed)``; centre-of-mass momentum and angular
   momentum removed (kinetic energy rescaled back); ASE ``FixCom`` constraint;
   ``ase.md.langevin.Langevin`` (``fixcm=False``) at 500 K, timestep 0.5 fs,
   friction 0.01 fs^-1, thermostat noise from the same generator.  One
   GFN2-xTB energy+force evaluation per MD step.
4. The first 2000 steps (1 ps) are discarded as equilibration; afterwards one
   frame is saved every ``--stride`` steps (default 10 = 5 fs).  Each frame
   stores the positions and the raw (unconstrained) GFN2-xTB energy and forces
   of that MD step.

Output keys (MD17 schema): ``z`` int64 [N]; ``R`` float64 [M,N,3] Å;
``E`` float64 [M,1] kcal/mol; ``F`` float64 [M,N,3] kcal/mol/Å (= -dE/dR);
``name`` = "aspirin"; ``theory`` = "GFN2-xTB"; ``md5`` (sGDML dataset
fingerprint, see :func:`sgdml_md5`); ``type`` = "d".  Energies are total
GFN2-xTB energies, converted with ``ase.units`` (1 kcal/mol =
``units.kcal / units.mol`` eV).  A provenance JSON (settings, versions,
timings, energy range, temperature, checks) is written next to the npz.

Both files are written atomically (temporary file + ``os.replace``).

Usage (tblite is *not* a dependency of empp-ff; install it to regenerate)::

    pip install tblite            # optional: pip install rdkit
    OMP_NUM_THREADS=1 python -m empp_ff.data.demo.make_demo_data \\
        --out empp_ff/data/demo/aspirin_demo.npz --frames 1200 --seed 7
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from empp_ff._versions import package_version
from empp_ff.data.demo.checks import bond_graph, finite_difference_check, make_calc, sgdml_md5

SMILES = "CC(=O)Oc1ccccc1C(=O)O"
NAME = "aspirin"
THEORY = "GFN2-xTB"

# Fallback start structure (Å), used when RDKit is unavailable.  RDKit
# ETKDGv3 conformer of SMILES above (Chem.AddHs, randomSeed=7, RDKit 2026.09);
# atom order = RDKit order (heavy atoms in SMILES order, then hydrogens).
EMBEDDED_START = [
    ("C", 3.553674, 0.454190, 0.069856),
    ("C", 2.160828, 0.097487, 0.503398),
    ("O", 1.847680, 0.045278, 1.722007),
    ("O", 1.253175, -0.166798, -0.489169),
    ("C", -0.064260, -0.507428, -0.209216),
    ("C", -0.375793, -1.844676, -0.047641),
    ("C", -1.639461, -2.299256, 0.230578),
    ("C", -2.644531, -1.352038, 0.352539),
    ("C", -2.356783, -0.000235, 0.194450),
    ("C", -1.074371, 0.426065, -0.085244),
    ("C", -0.789081, 1.838573, -0.247483),
    ("O", 0.347211, 2.281525, -0.500261),
    ("O", -1.870973, 2.714634, -0.105327),
    ("H", 4.110563, -0.490157, -0.202050),
    ("H", 4.120077, 0.998507, 0.831374),
    ("H", 3.468009, 1.032225, -0.889341),
    ("H", 0.406947, -2.600879, -0.141193),
    ("H", -1.840680, -3.350966, 0.349180),
    ("H", -3.652538, -1.698471, 0.573260),
    ("H", -3.194920, 0.696181, 0.303232),
    ("H", -1.764771, 3.726239, -0.202583),
]

DEFAULT_OUT = Path(__file__).with_name("aspirin_demo.npz")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def start_structure(seed: int, method: str = "auto", smiles: str = SMILES):
    """Return (ase.Atoms, method_used): the RDKit ETKDG embedding of ``smiles``, or the
    embedded aspirin geometry (only for the default SMILES)."""
    from ase import Atoms

    if method in ("auto", "rdkit"):
        try:
            from rdkit import Chem
            from rdkit.Chem import AllChem
        except ImportError:
            if method == "rdkit":
                raise SystemExit("--start rdkit requested but RDKit is not installed") from None
        else:
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                raise SystemExit(f"RDKit cannot read the SMILES {smiles!r}")
            mol = Chem.AddHs(mol)
            params = AllChem.ETKDGv3()
            params.randomSeed = int(seed)
            if AllChem.EmbedMolecule(mol, params) != 0:
                raise RuntimeError("RDKit ETKDG embedding failed")
            numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
            pos = mol.GetConformer().GetPositions()
            return Atoms(numbers=numbers, positions=pos), "rdkit-etkdgv3"
    if smiles != SMILES:
        raise SystemExit("the embedded start geometry is aspirin's; other molecules need RDKit")
    symbols = [s for s, *_ in EMBEDDED_START]
    pos = np.array([xyz for _, *xyz in EMBEDDED_START], dtype=float)
    return Atoms(symbols=symbols, positions=pos), "embedded"


def _atomic_write(path: Path, write_fn) -> None:
    """Write via ``write_fn(fileobj)`` to a temp file in path's dir, then os.replace."""
    from empp_ff._atomic import atomic_path

    with atomic_path(path, mode=0o644) as tmp:
        with open(tmp, "wb") as fh:
            write_fn(fh)


# --------------------------------------------------------------------------
# main generation
# --------------------------------------------------------------------------
def _count_calls(calc) -> dict:
    """Wrap ``calc.calculate`` to count energy+force evaluations; returns the counter."""
    n_calls = {"n": 0}
    _orig = calc.calculate

    def _counting_calculate(*args, **kwargs):
        n_calls["n"] += 1
        return _orig(*args, **kwargs)

    calc.calculate = _counting_calculate
    return n_calls


def _relax(atoms, fmax: float) -> dict:
    from ase.optimize import BFGS

    t0 = time.perf_counter()
    opt = BFGS(atoms, logfile=None)
    opt.run(fmax=fmax, steps=2000)
    return {
        "relax_steps": int(opt.nsteps),
        "relaxed_energy_eV": float(atoms.get_potential_energy()),
        "relaxed_fmax_eV_per_A": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
        "t_relax": time.perf_counter() - t0,
    }


def _langevin(atoms, seed: int, temperature_K: float, timestep_fs: float, friction_per_fs: float):
    """Seeded initial momenta (COM and angular momentum removed, COM fixed) and the integrator."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    vd.Stationary(atoms, preserve_temperature=True)
    vd.ZeroRotation(atoms, preserve_temperature=True)
    atoms.set_constraint(FixCom())
    return Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                    friction=friction_per_fs / units.fs, fixcm=False, rng=rng)


def _sample(dyn, atoms, frames: int, stride: int, equil_steps: int, progress: bool) -> dict:
    """Equilibrate, then save one frame every ``stride`` steps (kcal/mol, kcal/mol/Å)."""
    from ase import units
    from tqdm.auto import tqdm

    kcal = units.kcal / units.mol  # eV per kcal/mol
    ref_graph = bond_graph(atoms.numbers, atoms.positions)
    total = equil_steps + frames * stride
    n = len(atoms)
    R, E, F, T = np.empty((frames, n, 3)), np.empty((frames, 1)), np.empty((frames, n, 3)), np.empty(frames)
    graph_changes = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="step", desc="GFN2-xTB MD", disable=not progress,
               mininterval=2.0, dynamic_ncols=True)
    done = 0
    while done < equil_steps:
        chunk = min(500, equil_steps - done)
        dyn.run(chunk)
        done += chunk
        bar.update(chunk)
    t_equil = time.perf_counter() - t0
    for m in range(frames):
        dyn.run(stride)
        bar.update(stride)
        R[m] = atoms.get_positions()
        E[m, 0] = atoms.get_potential_energy() / kcal      # cached: no extra call
        F[m] = atoms.get_forces(apply_constraint=False) / kcal
        T[m] = atoms.get_temperature()                   # 3N-3 dof (FixCom)
        if not np.array_equal(bond_graph(atoms.numbers, R[m]), ref_graph):
            graph_changes += 1
    bar.close()
    if dyn.nsteps != total:
        raise RuntimeError(f"expected {total} MD steps, got {dyn.nsteps}")
    return {"R": R, "E": E, "F": F, "T": T, "graph_changes": graph_changes, "t_equil": t_equil,
            "t_md": time.perf_counter() - t0}


def _settings(seed, start_used, fmax, temperature_K, timestep_fs, friction_per_fs, equil_steps, stride, frames):
    return {
        "seed": seed, "start_structure": start_used,
        "relax": {"optimizer": "ase.optimize.BFGS", "fmax_eV_per_A": fmax},
        "calculator": "tblite.ase.TBLite(method='GFN2-xTB') defaults (accuracy 1.0, "
                      "electronic temperature 300 K), SCC restarted from previous step",
        "md": {"integrator": "ase.md.langevin.Langevin", "fixcm": False,
               "constraint": "FixCom", "temperature_K": temperature_K,
               "timestep_fs": timestep_fs, "friction_per_fs": friction_per_fs,
               "initial_momenta": "Maxwell-Boltzmann (thermalize_momenta, rng=default_rng(seed)) "
                                  "+ Stationary + ZeroRotation",
               "equilibration_steps": equil_steps, "stride_steps": stride,
               "production_steps": frames * stride},
        "forces_stored": "raw GFN2-xTB forces (no constraint projection)",
    }


def _provenance(data: dict, md: dict, relax: dict, settings: dict, start_used: str, calls: dict,
                t_start: float, name: str = NAME, smiles: str = SMILES) -> dict:
    from ase import units

    E, F, T = md["E"], md["F"], md["T"]
    md_calls = calls["md"]
    return {
        "description": f"{name} trajectory, MD17 schema, GFN2-xTB labels. "
                       "NOT the published MD17 (PBE+vdW-TS) data; do not compare errors with papers.",
        "molecule": name, "smiles": smiles, "theory": THEORY,
        "units": {"R": "Angstrom", "E": "kcal/mol", "F": "kcal/mol/Angstrom",
                  "eV_per_kcal_mol": units.kcal / units.mol},
        "settings": settings,
        "versions": {"python": platform.python_version(), "tblite": package_version("tblite"),
                     "ase": package_version("ase"), "numpy": np.__version__,
                     "rdkit": package_version("rdkit") if start_used.startswith("rdkit") else None},
        "frames": E.shape[0], "atoms": F.shape[1],
        "relax_steps": relax["relax_steps"], "relaxed_energy_eV": relax["relaxed_energy_eV"],
        "relaxed_fmax_eV_per_A": relax["relaxed_fmax_eV_per_A"],
        "force_calls": calls,
        "wall_s": {"relax": relax["t_relax"], "equilibration": md["t_equil"], "md_total": md["t_md"],
                   "total": time.perf_counter() - t_start,
                   "ms_per_md_step": 1000 * md["t_md"] / max(md_calls, 1)},
        "E_min_kcal": float(E.min()), "E_max_kcal": float(E.max()),
        "E_range_kcal": float(E.max() - E.min()),
        "F_rms_kcal_per_A": float(np.sqrt(np.mean(F ** 2))),
        "max_abs_net_force_kcal_per_A": float(np.abs(F.sum(axis=1)).max()),
        "T_mean_K": float(T.mean()), "T_std_K": float(T.std()),
        "T_dof": "3N-3",
        "frames_with_changed_bond_graph": md["graph_changes"],
        "bond_graph_rule": "bonded if d < 1.25 * (r_cov_i + r_cov_j), ase.data.covalent_radii",
        "md5": str(data["md5"]),
    }


def generate(frames: int, seed: int, stride: int = 10, equil_steps: int = 2000,
             temperature_K: float = 500.0, timestep_fs: float = 0.5,
             friction_per_fs: float = 0.01, fmax: float = 0.01, start: str = "auto",
             progress: bool = True, smiles: str = SMILES, name: str = NAME):
    """Run relax + Langevin MD of ``smiles``; return (data dict for npz, provenance dict)."""
    t_start = time.perf_counter()
    atoms, start_used = start_structure(seed, start, smiles)
    calc = make_calc()
    n_calls = _count_calls(calc)
    atoms.calc = calc
    relax = _relax(atoms, fmax)
    calls_relax = n_calls["n"]
    dyn = _langevin(atoms, seed, temperature_K, timestep_fs, friction_per_fs)
    md = _sample(dyn, atoms, frames, stride, equil_steps, progress)
    calls = {"relax": calls_relax, "md": n_calls["n"] - calls_relax}

    data = {"z": np.asarray(atoms.numbers, dtype=np.int64), "R": md["R"], "E": md["E"], "F": md["F"]}
    data["md5"] = np.array(sgdml_md5(data))
    data["name"] = np.array(name)
    data["theory"] = np.array(THEORY)
    data["type"] = np.array("d")
    settings = _settings(seed, start_used, fmax, temperature_K, timestep_fs, friction_per_fs, equil_steps, stride,
                         frames)
    return data, _provenance(data, md, relax, settings, start_used, calls, t_start, name, smiles)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None,
                   help="provenance JSON (default: --out with .json suffix)")
    p.add_argument("--frames", type=int, default=1200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--stride", type=int, default=10, help="MD steps between saved frames")
    p.add_argument("--equil-steps", type=int, default=2000)
    p.add_argument("--start", choices=("auto", "rdkit", "embedded"), default="auto",
                   help="start geometry: RDKit ETKDG if available (auto), or the embedded one")
    p.add_argument("--smiles", default=SMILES, help="molecule to simulate (default: aspirin, %(default)s)")
    p.add_argument("--name", default=NAME, help="molecule name stored in the file (default: %(default)s)")
    p.add_argument("--no-fd-check", action="store_true", help="skip the finite-difference check")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    json_path = args.json or out.with_suffix(".json")

    data, prov = generate(args.frames, args.seed, stride=args.stride,
                          equil_steps=args.equil_steps, start=args.start,
                          progress=not args.no_progress, smiles=args.smiles, name=args.name)

    if not args.no_fd_check:
        m = int(np.random.default_rng(args.seed).integers(args.frames))
        fd = {"frame": m}
        fd.update(finite_difference_check(data["z"], data["R"][m], data["F"][m], seed=args.seed))
        prov["finite_difference_check"] = fd

    _atomic_write(out, lambda fh: np.savez_compressed(fh, **data))
    prov["npz_file"] = out.name
    prov["npz_bytes"] = out.stat().st_size
    text = json.dumps(prov, indent=2) + "\n"
    _atomic_write(json_path, lambda fh: fh.write(text.encode()))

    print(f"wrote {out} ({prov['npz_bytes'] / 1e6:.2f} MB, {args.frames} frames), {json_path}")
    print(f"wall {prov['wall_s']['total']:.1f} s, {prov['wall_s']['ms_per_md_step']:.1f} ms/step, "
          f"<T> = {prov['T_mean_K']:.1f} +- {prov['T_std_K']:.1f} K, "
          f"bond-graph changes: {prov['frames_with_changed_bond_graph']}")
    if "finite_difference_check" in prov:
        fd = prov["finite_difference_check"]
        print(f"FD check (frame {fd['frame']}): |FD - analytic(tight)| <= "
              f"{fd['max_abs_fd_vs_analytic_tight']:.1e}, |FD - stored| <= "
              f"{fd['max_abs_fd_vs_stored']:.1e}, |stored - tight| <= "
              f"{fd['max_abs_stored_vs_analytic_tight_all_components']:.1e} kcal/mol/A")
    return 0


if __name__ == "__main__":
    sys.exit(main())
