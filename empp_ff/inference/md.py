"""Molecular dynamics and geometry optimisation drivers (ASE) for model files.

Thin, explicit wrappers over ASE's integrators and optimisers: they set up the
initial velocities, attach a trajectory writer, a log and a progress bar, and
return a summary (for NVE, the energy drift per atom per ps). They change no
global state apart from the random generator they are given (a seeded
``numpy.random.Generator``, never numpy's global one).

Both check the options and evaluate the model on the initial structure (unknown
elements, overlapping atoms) before they open any output file, and write their
files through ``inference/outputs.py``: under a temporary name that replaces the
target when the run ends or stops, so a refused run leaves an existing file as it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
from ase import Atoms, units

from empp_ff._signals import Stopped, deferred, interruptible
from empp_ff.inference.guard import InstabilityError
from empp_ff.inference.outputs import TrajectoryWriter, staged, stopped_outcome, structure_format, trajectory_format

ENSEMBLES = ("nve", "langevin", "nvt", "npt")
OPTIMIZERS = ("BFGS", "FIRE", "LBFGS")


def read_structure(path: Union[str, Path], index: Union[int, str] = -1) -> Atoms:
    """Read one structure with ``ase.io.read`` (any format it knows), with a clear
    error for a missing or unreadable file."""
    import ase.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        atoms = ase.io.read(str(path), index=index)
    except Exception as exc:
        raise ValueError(
            f"cannot read a structure from {path} ({type(exc).__name__}: {exc}); "
            "use a format ase.io.read understands (xyz, extxyz, pdb, cif, POSCAR, ...)"
        ) from exc
    if isinstance(atoms, list):  # pragma: no cover - index=-1 returns one Atoms
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise ValueError(f"{path} contains no atoms")
    return atoms


def energy_drift(times_fs: np.ndarray, total_energies: np.ndarray, num_atoms: int) -> float:
    """Slope of a least-squares line through E_total(t), in eV / atom / ps."""
    times_fs = np.asarray(times_fs, dtype=np.float64)
    total_energies = np.asarray(total_energies, dtype=np.float64)
    if len(times_fs) < 2:
        return 0.0
    slope_ev_per_fs = np.polyfit(times_fs, total_energies, 1)[0]
    return float(slope_ev_per_fs * 1000.0 / num_atoms)


@dataclass
class MDResult:
    ensemble: str
    steps: int
    dt_fs: float
    num_atoms: int
    times_fs: List[float] = field(default_factory=list)
    potential_energy: List[float] = field(default_factory=list)
    kinetic_energy: List[float] = field(default_factory=list)
    temperature: List[float] = field(default_factory=list)
    drift_ev_per_atom_per_ps: Optional[float] = None
    max_abs_fluctuation_ev_per_atom: Optional[float] = None
    wall_s: float = 0.0

    @property
    def total_energy(self) -> np.ndarray:
        return np.asarray(self.potential_energy) + np.asarray(self.kinetic_energy)

    def summary(self) -> Dict[str, Any]:
        d = asdict(self)
        for key in ("times_fs", "potential_energy", "kinetic_energy", "temperature"):
            d.pop(key)
        d["mean_temperature_K"] = float(np.mean(self.temperature)) if self.temperature else None
        d["steps_per_s"] = self.steps / self.wall_s if self.wall_s > 0 else None
        return d


def _make_dynamics(
    atoms: Atoms,
    ensemble: str,
    dt_fs: float,
    temperature: float,
    friction: float,
    rng: np.random.Generator,
    pressure_bar: float,
    tdamp_fs: Optional[float],
    pdamp_fs: Optional[float],
):
    timestep = dt_fs * units.fs
    tdamp = (tdamp_fs if tdamp_fs is not None else 100.0 * dt_fs) * units.fs
    pdamp = (pdamp_fs if pdamp_fs is not None else 1000.0 * dt_fs) * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=timestep)
    if ensemble == "langevin":
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        # Keep the centre of mass fixed the way ASE recommends (FixCom, not the
        # deprecated fixcm=True, which does not sample NVT exactly).
        if not any(isinstance(c, FixCom) for c in atoms.constraints):
            atoms.set_constraint(list(atoms.constraints) + [FixCom()])
        # friction given in 1/fs (ASE wants inverse ASE time units)
        return Langevin(
            atoms, timestep=timestep, temperature_K=temperature, friction=friction / units.fs,
            fixcm=False, rng=rng,
        )
    if ensemble == "nvt":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=timestep, temperature_K=temperature, tdamp=tdamp)
    if ensemble == "npt":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(
            atoms,
            timestep=timestep,
            temperature_K=temperature,
            pressure_au=pressure_bar * units.bar,
            tdamp=tdamp,
            pdamp=pdamp,
        )
    raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")


def _attach_observers(dyn, atoms: Atoms, result: MDResult, writer: Optional[TrajectoryWriter],
                      traj_interval: int, logfile, log_interval: int,
                      progress_steps: Optional[int]) -> List[Callable[[], None]]:
    """Record energies every step into ``result``; write the trajectory (``writer``) and the
    log; show a progress bar over ``progress_steps`` (None: no bar). Returns the closers."""
    dt_fs = result.dt_fs

    def record():
        result.times_fs.append(dyn.get_number_of_steps() * dt_fs)
        result.potential_energy.append(float(atoms.get_potential_energy()))
        result.kinetic_energy.append(float(atoms.get_kinetic_energy()))
        result.temperature.append(float(atoms.get_temperature()))

    dyn.attach(record, interval=1)
    closers: List[Callable[[], None]] = []
    if writer is not None:
        dyn.attach(writer, interval=max(1, traj_interval))
        closers.append(writer.close)
    if logfile is not None:
        from ase.md import MDLogger

        logger = MDLogger(dyn, atoms, str(logfile), header=True, stress=False, peratom=True, mode="w")

        def log_line():
            with deferred():  # a SIGTERM waits until the line is whole
                logger()

        dyn.attach(log_line, interval=max(1, log_interval))
        closers.append(logger.close)
    if progress_steps is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=progress_steps, desc=f"MD {result.ensemble}", unit="step", dynamic_ncols=True)

        def tick():
            if dyn.get_number_of_steps() == 0:
                return  # ase calls observers once before the first step
            bar.update(1)
            if result.temperature and dyn.get_number_of_steps() % 10 == 0:
                bar.set_postfix(T=f"{result.temperature[-1]:.0f}K", E=f"{result.total_energy[-1]:.4f}")

        dyn.attach(tick, interval=1)
        closers.insert(0, bar.close)
    return closers


def run_md(
    atoms: Atoms,
    calculator,
    *,
    steps: int,
    dt_fs: float = 0.5,
    temperature: float = 300.0,
    ensemble: str = "nve",
    friction: float = 0.01,
    seed: int = 0,
    trajectory: Optional[Union[str, Path]] = None,
    traj_interval: int = 10,
    logfile: Optional[Union[str, Path]] = None,
    log_interval: int = 10,
    init_velocities: bool = True,
    progress: bool = True,
    pressure_bar: float = 1.0,
    tdamp_fs: Optional[float] = None,
    pdamp_fs: Optional[float] = None,
) -> MDResult:
    """Run ``steps`` MD steps of ``ensemble`` (nve | langevin | nvt | npt).

    Velocities start from a Maxwell-Boltzmann distribution at ``temperature``
    with zero centre-of-mass momentum (unless ``init_velocities=False``).
    ``friction`` is the Langevin friction in 1/fs. Energies are recorded every
    step; for NVE the result carries the drift of the total energy (linear fit,
    eV/atom/ps) and the largest deviation from the mean (eV/atom).
    """
    import time

    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    ensemble = _check_md_options(atoms, ensemble, steps, dt_fs, traj_interval, log_interval)
    _check_thermostat(len(atoms), temperature, friction, init_velocities)
    fmt = trajectory_format(trajectory) if trajectory is not None else None
    atoms.calc = calculator
    _evaluate_start(atoms, _md_step(0, dt_fs))
    rng = np.random.default_rng(seed)
    if init_velocities:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
    dyn = _make_dynamics(
        atoms, ensemble, dt_fs, temperature, friction, rng, pressure_bar, tdamp_fs, pdamp_fs
    )
    result = MDResult(ensemble=ensemble, steps=steps, dt_fs=dt_fs, num_atoms=len(atoms))
    stopped: Optional[BaseException] = None
    # A SIGTERM outside the steps waits until the files are in place (empp_ff._signals).
    with deferred(), staged(trajectory) as traj_tmp, staged(logfile) as log_tmp:
        writer = TrajectoryWriter(atoms, traj_tmp, fmt) if traj_tmp is not None else None
        closers = _attach_observers(dyn, atoms, result, writer, traj_interval, log_tmp, log_interval,
                                    steps if progress else None)
        start = time.perf_counter()
        try:
            with interruptible():
                dyn.run(steps)  # observers fire at step 0 too, so step 0 is recorded
        except (InstabilityError, KeyboardInterrupt) as exc:
            stopped = exc
        finally:
            for close in closers:
                close()
        frames = writer.frames if writer is not None else 0
        # No observer ran for the failing step: its frame was not written.
        where = _md_step(dyn.get_number_of_steps() + 1 if result.times_fs else 0, dt_fs)
        made = frames if writer is not None else len(result.times_fs)  # frames, or log lines
        if stopped is not None and made == 0:  # nothing made: the targets stay as they were
            raise _stop_error(stopped, where, stopped_outcome(0, trajectory)) from stopped
    if stopped is not None:  # the files are in place: say what they hold
        raise _stop_error(stopped, where, stopped_outcome(frames, trajectory)) from stopped
    result.wall_s = time.perf_counter() - start
    if ensemble == "nve" and len(result.times_fs) > 1:
        etot = result.total_energy
        result.drift_ev_per_atom_per_ps = energy_drift(np.asarray(result.times_fs), etot, len(atoms))
        result.max_abs_fluctuation_ev_per_atom = float(np.max(np.abs(etot - etot.mean())) / len(atoms))
    return result


def _check_md_options(atoms: Atoms, ensemble: str, steps: int, dt_fs: float, *intervals: int) -> str:
    """The ensemble's name, after the checks that need no model."""
    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if steps < 0 or not dt_fs > 0:
        raise ValueError("steps must be >= 0 and dt_fs > 0")
    if any(interval < 1 for interval in intervals):
        raise ValueError(f"the write and log intervals must be >= 1 step, got {list(intervals)}")
    if ensemble == "npt" and not atoms.pbc.all():
        raise ValueError(
            "npt needs a cell periodic in all three directions "
            f"(this structure has pbc={atoms.pbc.tolist()}); use nvt or langevin for "
            "molecules, or give the structure a periodic cell"
        )
    return ensemble


def _check_thermostat(n_atoms: int, temperature: float, friction: float, init_velocities: bool) -> None:
    if n_atoms < 2 and init_velocities:
        raise ValueError(f"MD needs at least 2 atoms, the structure has {n_atoms}: with its centre of mass "
                         "at rest a single atom cannot move (use a molecule or a larger cell, atoms.repeat)")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 K, got {temperature} K")
    if not friction >= 0:
        raise ValueError(f"the Langevin friction must be >= 0 (1/fs), got {friction}")


def _evaluate_start(atoms: Atoms, where: str) -> None:
    """Run the model on the initial structure before any file is opened: unknown elements and
    overlapping atoms are refused here. The calculator keeps the result for the first step."""
    try:
        atoms.get_forces()
    except InstabilityError as exc:
        raise exc.at(where) from exc


def _md_step(step: int, dt_fs: float) -> str:
    return f"MD step {step} (t = {step * dt_fs:.1f} fs)" if step else "MD step 0 (the initial structure)"


def _stop_error(exc: BaseException, where: str, outcome: str) -> BaseException:
    """``exc`` (an instability, SIGTERM or Ctrl-C) located at ``where``, with what the run left."""
    if isinstance(exc, InstabilityError):
        return exc.at(where, outcome)
    if isinstance(exc, Stopped):
        return exc.with_message(f"stopped by {exc.name} at {where}" + (f"; {outcome}" if outcome else ""))
    return KeyboardInterrupt(f"interrupted at {where}" + (f"; {outcome}" if outcome else ""))


@dataclass
class OptResult:
    converged: bool
    steps: int
    fmax: float
    final_fmax: float
    initial_energy: float
    final_energy: float


def optimize(
    atoms: Atoms,
    calculator,
    *,
    fmax: float = 0.01,
    optimizer: str = "BFGS",
    steps: int = 1000,
    trajectory: Optional[Union[str, Path]] = None,
    logfile: Optional[Union[str, Path]] = "-",
) -> OptResult:
    """Relax atomic positions until the largest force is below ``fmax`` (eV/Å).

    ``trajectory``: a .traj file receives every step; any other ``ase.io.write`` format, the
    final structure (also when not converged). ``logfile``: a file, ``"-"`` (stdout) or None.
    """
    import ase.optimize

    name = optimizer.upper()
    lookup = {o.upper(): o for o in OPTIMIZERS}
    if name not in lookup:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not fmax > 0 or steps < 0:
        raise ValueError(f"fmax must be > 0 and steps >= 0, got fmax={fmax}, steps={steps}")
    fmt = structure_format(trajectory) if trajectory is not None else None
    atoms.calc = calculator
    _evaluate_start(atoms, "the initial structure")
    e0 = float(atoms.get_potential_energy())
    stopped: Optional[BaseException] = None
    log_target = None if logfile in (None, "-") else logfile
    with deferred(), staged(trajectory) as out_tmp, staged(log_target) as log_tmp:
        opt = getattr(ase.optimize, lookup[name])(atoms, logfile=log_tmp or logfile)
        writer = TrajectoryWriter(atoms, out_tmp, fmt) if fmt == "traj" else None
        if writer is not None:
            opt.attach(writer, interval=1)
        try:
            with interruptible():
                converged = bool(opt.run(fmax=fmax, steps=steps))
        except (InstabilityError, KeyboardInterrupt) as exc:
            stopped = exc
        finally:
            opt.close()  # the log file
            if writer is not None:
                writer.close()
        where = f"optimisation step {opt.get_number_of_steps()}"
        if stopped is not None and writer is None:
            raise _stop_error(stopped, where, f"no final structure was written ({trajectory} is as it was)"
                              if trajectory is not None else "") from stopped
        if stopped is not None and writer.frames == 0:
            raise _stop_error(stopped, where, stopped_outcome(0, trajectory)) from stopped
        if stopped is None and out_tmp is not None and writer is None:
            import ase.io

            ase.io.write(out_tmp, atoms, format=fmt)
    if stopped is not None:
        raise _stop_error(stopped, where, stopped_outcome(writer.frames, trajectory)) from stopped
    forces = atoms.get_forces()
    return OptResult(
        converged=converged,
        steps=int(opt.get_number_of_steps()),
        fmax=fmax,
        final_fmax=float(np.sqrt((forces**2).sum(axis=1)).max()) if len(atoms) else 0.0,
        initial_energy=e0,
        final_energy=float(atoms.get_potential_energy()),
    )
