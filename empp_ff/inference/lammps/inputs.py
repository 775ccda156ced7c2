"""Write LAMMPS data files and simple MD inputs for ``pair_style empp``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence


def write_data(atoms, path, elements: Optional[Sequence[str]] = None) -> List[str]:
    """Write ``atoms`` as a LAMMPS data file (atom_style atomic, metal units, masses).

    Atom types follow ``elements`` (default: the symbols present, sorted by atomic
    number); returns that list, i.e. the element names for ``pair_coeff * * model.pt ...``.
    Non-periodic structures get an orthorhombic box with 10 A of vacuum; LAMMPS
    boxes are always written periodic (``boundary p p p`` works for a molecule in
    vacuum as long as the box is larger than the model's ghost shell).
    """
    from ase.data import atomic_numbers
    from ase.io.lammpsdata import write_lammps_data

    atoms = atoms.copy()
    if elements is None:
        elements = sorted(set(atoms.get_chemical_symbols()), key=lambda s: atomic_numbers[s])
    elements = list(elements)
    if not atoms.pbc.any() or atoms.cell.rank < 3:
        atoms.center(vacuum=10.0)
        atoms.pbc = True
    path = Path(path)
    with open(path, "w") as fd:
        write_lammps_data(fd, atoms, specorder=elements, masses=True, units="metal", atom_style="atomic")
    return elements


MD_TEMPLATE = """\
# written by `empp-ff lammps md`
units           metal
atom_style      atomic
boundary        p p p
newton          on
read_data       {data}

pair_style      empp {pair_args}
pair_coeff      * * {model} {elements}

neighbor        1.0 bin
neigh_modify    every 1 delay 0 check yes
timestep        {dt_ps}
velocity        all create {temperature} {seed} mom yes rot yes dist gaussian
{fix}
thermo_style    custom step time temp pe ke etotal press
thermo          {thermo}
{dump}
run             {steps}
"""


def md_input(
    *,
    data: str,
    model: str,
    elements: Sequence[str],
    steps: int,
    dt_fs: float,
    temperature: float,
    ensemble: str = "nvt",
    tdamp_fs: float = 100.0,
    thermo: int = 10,
    dump: Optional[str] = None,
    dump_every: int = 10,
    seed: int = 12345,
    pair_args: str = "",
) -> str:
    ensemble = ensemble.lower()
    if ensemble == "nve":
        fix = "fix             integrate all nve"
    elif ensemble == "nvt":
        fix = f"fix             integrate all nvt temp {temperature} {temperature} {tdamp_fs / 1000.0}"
    else:
        raise ValueError(f"ensemble must be 'nve' or 'nvt', got {ensemble!r}")
    dump_line = ""
    if dump:
        dump_line = (
            f"dump            traj all custom {dump_every} {dump} id type element x y z fx fy fz\n"
            f"dump_modify     traj element {' '.join(elements)} sort id"
        )
    return MD_TEMPLATE.format(
        data=data,
        model=model,
        elements=" ".join(elements),
        pair_args=pair_args,
        dt_ps=dt_fs / 1000.0,
        temperature=temperature,
        seed=seed,
        fix=fix,
        thermo=thermo,
        dump=dump_line,
        steps=steps,
    )
