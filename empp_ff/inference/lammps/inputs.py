"""Write LAMMPS data files and simple MD inputs for ``pair_style empp``.

Both files start with a line saying who wrote them (:func:`written_here`), so ``empp-ff
lammps md`` may replace its own earlier files and refuses to replace anyone else's.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import List, Optional, Sequence

DATA_TITLE = "(written by empp-ff)"
INPUT_TITLE = "# written by `empp-ff lammps md`"


def written_here(path) -> bool:
    """Whether the file ``path`` is an input or data file this module wrote (its first line says so)."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200).decode("utf-8", "replace").strip()
    except OSError:
        return False
    return first in (DATA_TITLE, INPUT_TITLE)


def quoted(word: str) -> str:
    """``word`` as one LAMMPS argument: quoted, so spaces, '#' and '$' are taken literally."""
    for quote in ('"', "'", '"""'):
        if quote not in word:
            return f"{quote}{word}{quote}"
    raise ValueError(f"cannot pass {word!r} to LAMMPS: it contains both kinds of quote; rename it")


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
    from empp_ff._atomic import atomic_path

    text = io.StringIO()
    write_lammps_data(text, atoms, specorder=elements, masses=True, units="metal", atom_style="atomic")
    body = text.getvalue().split("\n", 1)[1]  # ASE's title line, "(written by ASE)", replaced
    with atomic_path(path) as tmp:
        Path(tmp).write_text(f"{DATA_TITLE}\n{body}")
    return elements


MD_TEMPLATE = INPUT_TITLE + """
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
            f"dump            traj all custom {dump_every} {quoted(dump)} id type element x y z fx fy fz\n"
            f"dump_modify     traj element {' '.join(elements)} sort id"
        )
    return MD_TEMPLATE.format(
        data=data,
        model=quoted(model),
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
