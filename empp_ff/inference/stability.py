"""MD stability of a model file, the field's second metric beside the force error
("Forces are not enough", Fu et al., 2023).

From ``runs`` frames of a reference data set of one molecule, with a different seed
each, the model drives Langevin NVT dynamics (BAOAB splitting) at ``temperature``
for ``time_ps``. A run *collapses* at the first check where any bond of the
reference (a pair closer than 1.2 x the sum of covalent radii in the first reference
frame, as the calculator's guard defines bonds) deviates from its mean length over
the reference frames by more than ``max_bond_deviation`` Å. Reported: the time
each run stayed stable, their median, and the h(r) error over the stable part:
``hr_mae`` = ∫ |h_MD(r) - h_ref(r)| dr, where h(r) is the distribution of all
pairwise distances (``bins`` bins up to ``r_range`` Å, normalised to unit area), so
0 is a perfect match and 2 no overlap at all.

The runs are independent copies of the molecule in one model call per step (the
model file's graph holds them as disconnected molecules: no edge joins two copies),
so five runs cost little more than one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch


@dataclass
class StabilitySettings:
    temperature: float = 500.0  # K
    dt_fs: float = 0.5
    time_ps: float = 50.0
    runs: int = 5
    friction: float = 0.01  # 1/fs
    seed: int = 0
    max_bond_deviation: float = 0.5  # Å
    check_every: int = 20  # steps between collapse checks (and h(r) samples)
    bins: int = 500
    r_range: float = 10.0  # Å

    def validate(self) -> None:
        finite = math.isfinite
        checks = [
            (finite(self.temperature) and self.temperature > 0, f"--temperature must be > 0 K, got {self.temperature}"),
            (finite(self.dt_fs) and self.dt_fs > 0, f"--dt must be > 0 fs, got {self.dt_fs}"),
            (finite(self.time_ps) and self.time_ps > 0, f"--time must be > 0 ps, got {self.time_ps}"),
            (self.runs >= 1, f"--runs must be >= 1, got {self.runs}"),
            (finite(self.friction) and self.friction > 0, f"--friction must be > 0 (1/fs), got {self.friction}"),
            (finite(self.max_bond_deviation) and self.max_bond_deviation > 0,
             f"--max-bond-deviation must be > 0 Å, got {self.max_bond_deviation}"),
            (self.check_every >= 1, f"--check-every must be >= 1 step, got {self.check_every}"),
            (self.bins >= 1 and finite(self.r_range) and self.r_range > 0, "h(r) needs bins >= 1 and r_range > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def steps(self) -> int:
        return max(1, round(self.time_ps * 1000.0 / self.dt_fs))


# --------------------------------------------------------------------------- reference
def reference_frames(path: Union[str, Path], fmt: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(atomic numbers [N], positions [F, N, 3]) of a data file of one molecule."""
    from empp_ff.data.readers import read_structures

    numbers, frames = None, []
    for i, s in enumerate(read_structures(path, fmt=fmt, allow_missing_labels=True)):
        if s.pbc.any():
            raise ValueError(f"{path}: frame {i} is periodic; the stability test is for molecules")
        if numbers is None:
            numbers = s.atomic_numbers.astype(np.int64)
        elif not np.array_equal(numbers, s.atomic_numbers):
            raise ValueError(f"{path}: frame {i} is another molecule (its atomic numbers differ from frame 0's); "
                             "the reference must be frames of one molecule")
        frames.append(np.asarray(s.positions, dtype=np.float64))
    if not frames:
        raise ValueError(f"{path} holds no structures")
    if len(numbers) < 2:
        raise ValueError(f"{path}: a molecule of {len(numbers)} atom has no bonds to test")
    return numbers, np.stack(frames)


def reference_bonds(numbers: np.ndarray, frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(bonded pairs [B, 2] of the first frame, their mean lengths over all frames [B])."""
    from empp_ff.inference.guard import bonded_pairs

    pairs, _ = bonded_pairs(numbers, frames[0])
    if len(pairs) == 0:
        raise ValueError("the reference's first frame has no bonds (no pair within 1.2 x the covalent radii)")
    lengths = np.linalg.norm(frames[:, pairs[:, 0]] - frames[:, pairs[:, 1]], axis=-1)
    return pairs, lengths.mean(axis=0)


def distance_counts(frames: np.ndarray, bins: int, r_range: float) -> np.ndarray:
    """Histogram counts of all pairwise distances of ``frames`` [F, N, 3]."""
    n = frames.shape[1]
    i, j = np.triu_indices(n, k=1)
    d = np.linalg.norm(frames[:, i] - frames[:, j], axis=-1)
    return np.histogram(d.ravel(), bins=bins, range=(0.0, r_range))[0].astype(np.float64)


def density(counts: np.ndarray, r_range: float) -> np.ndarray:
    """Counts normalised to unit area (1/Å); zeros when there are none."""
    total = counts.sum()
    return counts / (total * (r_range / len(counts))) if total > 0 else np.zeros_like(counts)


def hr_error(counts: np.ndarray, reference: np.ndarray, r_range: float) -> float:
    """∫ |h(r) - h_ref(r)| dr of two count histograms (NaN when ``counts`` is empty)."""
    if counts.sum() == 0:
        return math.nan
    dr = r_range / len(counts)
    return float(np.abs(density(counts, r_range) - density(reference, r_range)).sum() * dr)


# --------------------------------------------------------------------------- dynamics
class ReplicaForces:
    """Forces of R copies of one molecule from one model call (copies share no edge)."""

    def __init__(self, model, metadata: Dict[str, Any], numbers: np.ndarray, replicas: int, device: torch.device):
        from empp_ff._dtypes import torch_dtype

        species = {int(z) for z in metadata["species"]}
        unknown = sorted({int(z) for z in numbers} - species)
        if unknown:
            raise ValueError(f"the model was not trained on atomic number(s) {unknown} of the reference "
                             f"(it knows {sorted(species)})")
        self.model, self.device = model, device
        self.dtype = torch_dtype(str(metadata["dtype"]))
        self.r_max = float(metadata["r_max"])
        self.numbers = torch.as_tensor(numbers, dtype=torch.long, device=device)
        self.n = len(numbers)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Forces [R, N, 3] (eV/Å) at ``positions`` [R, N, 3] (Å)."""
        from empp_ff.neighbours import all_pairs_edges

        replicas = positions.shape[0]
        pos = torch.as_tensor(positions, dtype=self.dtype, device=self.device)
        edge_index, shifts, _ = all_pairs_edges(pos, self.r_max)  # no edge joins two copies
        flat = pos.reshape(-1, 3)
        out = self.model(flat, self.numbers.repeat(replicas), edge_index, shifts, flat.shape[0], False)
        return out["forces"].detach().to(torch.float64).cpu().numpy().reshape(replicas, self.n, 3)


@dataclass
class StabilityTrace:
    """What the runs did: the max bond deviation of each run at each check."""

    check_times_ps: List[float]
    max_deviation: List[List[float]]  # [run][check] (NaN after the collapse)
    hr_reference: np.ndarray
    hr_md: np.ndarray
    r_edges: np.ndarray


class LangevinReplicas:
    """BAOAB Langevin dynamics of R copies of one molecule (ASE units: Å, eV, amu), each
    copy with its own noise stream; ``step(idx)`` advances the copies ``idx``."""

    def __init__(self, forces_of: ReplicaForces, numbers: np.ndarray, x: np.ndarray, settings: StabilitySettings):
        from ase import units
        from ase.data import atomic_masses

        s = settings
        self.forces_of, self.n_atoms = forces_of, len(numbers)
        self.rng = [np.random.default_rng([s.seed, k]) for k in range(len(x))]
        self.masses = atomic_masses[numbers][None, :, None]
        self.kT, self.kB = units.kB * s.temperature, units.kB
        self.dt = s.dt_fs * units.fs
        self.c1 = math.exp(-s.friction / units.fs * self.dt)
        self.c2 = math.sqrt(1.0 - self.c1 * self.c1)
        self.x = x.copy()
        v = np.stack([g.standard_normal(x.shape[1:]) for g in self.rng]) * np.sqrt(self.kT / self.masses)
        self.v = v - (v * self.masses).sum(axis=1, keepdims=True) / self.masses.sum()  # no centre-of-mass drift
        self.f = forces_of(self.x)

    def step(self, idx: np.ndarray) -> np.ndarray:
        """One step of the copies ``idx``; returns those whose forces are no longer finite."""
        m, dt = self.masses, self.dt
        noise = np.stack([self.rng[k].standard_normal(self.x.shape[1:]) for k in idx])
        v = self.v[idx] + 0.5 * dt * self.f[idx] / m
        x = self.x[idx] + 0.5 * dt * v
        v = self.c1 * v + self.c2 * np.sqrt(self.kT / m) * noise
        x = x + 0.5 * dt * v
        f = self.forces_of(x) if np.isfinite(x).all() else np.full_like(x, np.nan)
        self.x[idx], self.v[idx], self.f[idx] = x, v + 0.5 * dt * f / m, f
        return idx[~np.isfinite(f).all(axis=(1, 2))]

    def temperature(self, idx: np.ndarray) -> float:
        kinetic = 0.5 * (self.masses * self.v[idx] ** 2).sum(axis=(1, 2))
        return float((2 * kinetic / (3 * self.n_atoms * self.kB)).mean())


def run_stability(model, metadata: Dict[str, Any], numbers: np.ndarray, frames: np.ndarray,
                  settings: StabilitySettings, device: torch.device,
                  progress: Optional[Callable[[int], None]] = None) -> Tuple[Dict[str, Any], StabilityTrace]:
    """Run the ``settings.runs`` NVT runs; returns (the report, the trace for the plot)."""
    settings.validate()
    s, R = settings, settings.runs
    pairs, mean_lengths = reference_bonds(numbers, frames)
    starts = np.linspace(0, len(frames) - 1, R).round().astype(int)
    md = LangevinReplicas(ReplicaForces(model, metadata, numbers, R, device), numbers, frames[starts], s)
    active = np.ones(R, dtype=bool)
    stable_ps = np.full(R, float(s.time_ps))
    counts = np.zeros((R, s.bins))
    check_times, deviations, temperatures = [], [[] for _ in range(R)], []

    def collapse(k: int, step: int) -> None:
        active[k] = False
        stable_ps[k] = step * s.dt_fs / 1000.0

    wall = time.perf_counter()
    for step in range(1, s.steps + 1):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        for k in md.step(idx):
            collapse(k, step)
        if step % s.check_every == 0 or step == s.steps:
            check_times.append(step * s.dt_fs / 1000.0)
            for k in range(R):
                dev = math.nan
                if active[k]:
                    lengths = np.linalg.norm(md.x[k, pairs[:, 0]] - md.x[k, pairs[:, 1]], axis=-1)
                    dev = float(np.abs(lengths - mean_lengths).max())
                    if dev > s.max_bond_deviation:
                        collapse(k, step)
                    else:  # the stable part: this frame counts for h(r)
                        counts[k] += distance_counts(md.x[k][None], s.bins, s.r_range)
                deviations[k].append(dev)
            if active.any():
                temperatures.append(md.temperature(np.flatnonzero(active)))
        if progress is not None:
            progress(step)
    reference = distance_counts(frames, s.bins, s.r_range)
    report = _report(s, stable_ps, active, counts, reference, temperatures, time.perf_counter() - wall)
    report.update(start_frames=[int(i) for i in starts], n_atoms=int(len(numbers)), n_bonds=int(len(pairs)),
                  n_reference_frames=int(len(frames)))
    trace = StabilityTrace(check_times, deviations, density(reference, s.r_range),
                           density(counts.sum(axis=0), s.r_range), np.linspace(0.0, s.r_range, s.bins + 1))
    return report, trace


def _report(s: StabilitySettings, stable_ps: np.ndarray, active: np.ndarray, counts: np.ndarray,
            reference: np.ndarray, temperatures: List[float], wall: float) -> Dict[str, Any]:
    collapsed = [bool(not a) for a in active]
    return {
        "stable_ps": [float(t) for t in stable_ps],
        "stable_ps_median": float(np.median(stable_ps)),
        "collapsed": collapsed,
        "n_collapsed": int(sum(collapsed)),
        "hr_mae": hr_error(counts.sum(axis=0), reference, s.r_range),
        "hr_mae_per_run": [hr_error(c, reference, s.r_range) for c in counts],
        "runs": s.runs, "time_ps": s.time_ps, "dt_fs": s.dt_fs, "temperature_K": s.temperature,
        "friction_per_fs": s.friction, "seed": s.seed, "max_bond_deviation_A": s.max_bond_deviation,
        "check_every_steps": s.check_every, "hr_bins": s.bins, "hr_range_A": s.r_range,
        "mean_temperature_K": float(np.mean(temperatures)) if temperatures else math.nan,
        "wall_s": round(wall, 3),
    }
