"""The files an MD run or a relaxation writes: trajectory, log, final structure.

Each is written under a temporary name beside its target (``empp_ff._atomic``) and
moved over the target only when the run ends, or when it stops (the instability
guard, Ctrl-C, SIGTERM: ``empp_ff._signals``) after writing at least one frame: a
stopped run keeps the frames it made under the name asked for. The drivers check the
model, the structure and the options before any of these files is opened, so a
refused run, a run stopped before its first frame, or one that fails otherwise leaves
an existing file byte for byte as it was.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional, Union

from ase import Atoms

from empp_ff._atomic import atomic_path
from empp_ff._signals import deferred
from empp_ff.inference.guard import InstabilityError, finite_frame

PathLike = Union[str, Path]


def trajectory_format(path: PathLike) -> str:
    """The format of an MD trajectory written to ``path``: ``traj`` or ``extxyz``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".traj":
        return "traj"
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    raise ValueError(f"cannot write an MD trajectory to {path}: use a .traj (ASE trajectory) or "
                     ".xyz/.extxyz (extended XYZ) file name")


def structure_format(path: PathLike) -> str:
    """The ``ase.io.write`` format of a structure written to ``path`` (from its name)."""
    from ase.io.formats import filetype, ioformats

    try:
        name = filetype(str(path), read=False)
    except Exception:  # unknown suffix: KeyError, UnknownFileTypeError
        name = None
    if name not in ioformats or not ioformats[name].can_write:
        raise ValueError(f"cannot write a structure to {path}: ase.io.write knows no format for this file "
                         "name (use .xyz, .extxyz, .traj, .pdb, .cif, POSCAR, ...)")
    return name


@contextlib.contextmanager
def staged(target: Optional[PathLike]) -> Iterator[Optional[str]]:
    """A temporary path for ``target`` (None: None) that replaces it when the block ends without an
    exception; an exception discards it and leaves ``target`` as it was."""
    if target is None:
        yield None
        return
    with atomic_path(target) as tmp:
        yield tmp


def stopped_outcome(frames: int, target: Optional[PathLike]) -> str:
    """What a stopped run left, for its error message."""
    if target is None:
        return ""
    if frames == 0:
        return f"no frame was written ({target} is as it was)"
    return f"the {frames} frame(s) before it are in {target}"


class TrajectoryWriter:
    """Append frames of ``atoms`` (with energy and forces) to ``path`` in ``fmt`` (``traj`` or an
    ``ase.io.write`` format that appends); counts them in ``frames``."""

    def __init__(self, atoms: Atoms, path: PathLike, fmt: str):
        self.atoms, self.path, self.fmt = atoms, str(path), fmt
        self.frames = 0
        self._traj = None
        if fmt == "traj":
            from ase.io.trajectory import Trajectory

            self._traj = Trajectory(self.path, "w", atoms)

    def __call__(self) -> None:
        bad = finite_frame(self.atoms)
        if bad:  # only a calculator without the guard lets a run get here
            raise InstabilityError(f"non-finite positions of atom(s) {bad[:8]}: not writing the frame", atoms=bad)
        with deferred():  # a SIGTERM waits until the frame is whole
            self._write()

    def _write(self) -> None:
        if self._traj is not None:
            self._traj.write()
        else:
            import ase.io
            from ase.calculators.singlepoint import SinglePointCalculator

            frame = self.atoms.copy()
            frame.calc = SinglePointCalculator(frame, energy=self.atoms.get_potential_energy(),
                                               forces=self.atoms.get_forces())
            ase.io.write(self.path, frame, format=self.fmt, append=True)
        self.frames += 1

    def close(self) -> None:
        if self._traj is not None:
            self._traj.close()
