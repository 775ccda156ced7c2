"""Small models and reference evaluations for the LAMMPS tests, examples and benchmarks.

``make_model`` writes a small untrained model file with the real exporter.
``reference`` evaluates a model file through the ASE calculator, which is what
LAMMPS must reproduce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

# Reference energies (eV) of the test model: arbitrary but fixed.
_E0 = {1: -13.6, 6: -1029.8, 7: -1485.0, 8: -2042.6}


def _spec(atomic_numbers, dtype, num_channels, num_interactions, r_max, seed):
    from empp_ff.model.spec import BackboneSpec

    return BackboneSpec(
        atomic_numbers=list(atomic_numbers),
        atomic_energies=[_E0.get(z, -1.0 * z) for z in atomic_numbers],
        r_max=r_max,
        num_channels=num_channels,
        max_L=1,
        num_interactions=num_interactions,
        correlation=2,
        max_ell=2,
        num_bessel=6,
        radial_mlp=[16, 16],
        avg_num_neighbors=8.0,
        # an untrained model is nearly flat; make forces O(1 eV/A) so tests are sensitive
        scale=3.0,
        dtype=dtype,
    )


def make_model(
    path,
    *,
    atomic_numbers: Sequence[int] = (1, 6, 8),
    dtype: str = "float64",
    num_channels: int = 8,
    num_interactions: int = 2,
    r_max: float = 3.5,
    seed: int = 0,
    perturb: float = 0.05,
    scale: Optional[float] = None,
) -> Path:
    """Write a small untrained model file obeying the model-file contract.

    ``perturb`` adds seeded noise to all weights (so that the untrained model is far
    from flat: sensitive accuracy tests); ``perturb=0`` gives a gentler model."""
    import torch

    path = Path(path)
    spec = _spec(atomic_numbers, dtype, num_channels, num_interactions, r_max, seed)
    if scale is not None:
        spec.scale = float(scale)
    torch.manual_seed(seed)
    from empp_ff.model.backbone import build_backbone
    from empp_ff.model.potential import Potential

    potential = Potential(build_backbone(spec))
    # perturb the (zero-initialised) parts so that the model is not trivially flat
    if perturb:
        with torch.no_grad():
            for p in potential.parameters():
                p.add_(perturb * torch.randn_like(p))
    potential.eval()

    from empp_ff.export import export_potential

    export_potential(potential, path)
    return path


# ----------------------------------------------------------------------------------------------
def reference(model_path, atoms, *, compute_virial: bool = True) -> Dict[str, np.ndarray]:
    """Energy (eV), forces (eV/A), per-atom energies and stress (eV/A^3, ASE sign) of
    ``atoms`` from the ASE calculator: what LAMMPS must reproduce."""
    from empp_ff.calculator import EMPPCalculator

    a = atoms.copy()
    a.calc = EMPPCalculator(str(model_path), device="cpu")
    res = {
        "energy": float(a.get_potential_energy()),
        "forces": np.asarray(a.get_forces()),
        "node_energy": np.asarray(a.get_potential_energies()),
    }
    if compute_virial and a.pbc.all():
        from ase.stress import voigt_6_to_full_3x3_stress

        res["stress"] = voigt_6_to_full_3x3_stress(a.get_stress())
    return res


# ----------------------------------------------------------------------------------------------
def molecular_box(
    n_molecules: int,
    box: float,
    *,
    molecules: Sequence[str] = ("H2O", "CH3OH", "CO2"),
    min_distance: float = 2.0,
    seed: int = 0,
    wrap: bool = True,
):
    """A periodic cubic box of randomly placed and oriented small molecules (H, C, O),
    wrapped so that molecules cross the periodic boundaries."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    templates = [molecule(m) for m in molecules]
    positions: List[np.ndarray] = []
    numbers: List[int] = []
    placed = np.zeros((0, 3))
    cell = np.eye(3) * box
    tries = 0
    while len(positions) < n_molecules:
        tries += 1
        if tries > 200000:
            raise RuntimeError(f"could not place {n_molecules} molecules in a {box} A box")
        t = templates[len(positions) % len(templates)]
        p = t.get_positions() - t.get_center_of_mass()
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        a, b, c, d = q
        R = np.array(
            [
                [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
            ]
        )
        p = p @ R.T + rng.uniform(0, box, size=3)
        if len(placed):
            diff = p[:, None, :] - placed[None, :, :]
            diff -= box * np.round(diff / box)
            if np.min(np.linalg.norm(diff, axis=-1)) < min_distance:
                continue
        positions.append(p)
        numbers.extend(t.get_atomic_numbers())
        placed = np.concatenate([placed, p])
    atoms = Atoms(numbers=numbers, positions=np.concatenate(positions), cell=cell, pbc=True)
    if wrap:
        atoms.wrap()
    return atoms


NKTV2P_METAL = 1.6021765e6  # LAMMPS metal units: eV/A^3 -> bar (force.cpp)


def lammps_single_point(
    model_path,
    atoms,
    *,
    np_ranks: int = 1,
    elements: Optional[Sequence[str]] = None,
    pair_args: str = "",
    units: str = "metal",
    workdir=None,
    timeout: float = 300,
) -> Dict[str, np.ndarray]:
    """Energy, forces (by atom, in input order) and pressure tensor from ``lmp`` (run 0).

    Runs ``lmp`` (or ``mpirun -np N lmp``) in a subprocess. Returns energy and forces
    in the LAMMPS units, ``pressure`` [3, 3] in LAMMPS pressure units, and ``log``.
    """
    import subprocess
    import tempfile

    from empp_ff.lammps.inputs import write_data
    from empp_ff.lammps.runner import lammps_command, lammps_env

    tmp = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="empp_lmp_"))
    tmp.mkdir(parents=True, exist_ok=True)
    elements = write_data(atoms, tmp / "system.data", elements)
    inp = f"""
units {units}
atom_style atomic
boundary p p p
newton on
read_data system.data
pair_style empp {pair_args}
pair_coeff * * {Path(model_path).resolve()} {' '.join(elements)}
neighbor 1.0 bin
compute pea all pe/atom
thermo_style custom step pe pxx pyy pzz pxy pxz pyz
thermo_modify format float %.17g
run 0
print "EMPP_PE $(pe:%.17g)"
print "EMPP_P $(pxx:%.17g) $(pyy:%.17g) $(pzz:%.17g) $(pxy:%.17g) $(pxz:%.17g) $(pyz:%.17g)"
write_dump all custom forces.dump id fx fy fz c_pea modify sort id format float %.17g
"""
    (tmp / "in.sp").write_text(inp)
    cmd = lammps_command(np_ranks) + ["-in", "in.sp", "-log", "log.lammps", "-nocite"]
    proc = subprocess.run(
        cmd, cwd=tmp, env=lammps_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
    )
    log = proc.stdout
    if proc.returncode != 0 or "EMPP_PE" not in log:
        raise RuntimeError(f"LAMMPS failed (rc={proc.returncode}):\n{log[-3000:]}")
    pe = float(log.split("EMPP_PE ")[1].split()[0])
    p = [float(v) for v in log.split("EMPP_P ")[1].split("\n")[0].split()]
    pressure = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
    lines = (tmp / "forces.dump").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("ITEM: ATOMS"))) + 1
    data = np.array([[float(v) for v in line.split()] for line in lines[start:]])
    order = np.argsort(data[:, 0])
    data = data[order]
    return {"energy": pe, "forces": data[:, 1:4], "node_energy": data[:, 4], "pressure": pressure, "log": log}
