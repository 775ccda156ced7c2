"""3-D structures of one molecule for the corpus: ETKDG conformers, MMFF94 minima, and
classical normal-mode samples around them at a temperature (MD-like displacements).

Why normal-mode sampling: the labelled data EMPP's start is fine-tuned on are MD frames
(500 K), not minima. A classical harmonic oscillator at temperature T has, in
mass-weighted normal coordinates q_k with force constants λ_k (= ω_k²), independent
Gaussian q_k with variance k_B·T / λ_k; drawing them from the MMFF94 Hessian gives the
vibrational spread of MD frames without running MD. Modes softer than ``min_lambda``
(2 kcal/mol/Å²/amu ≈ 150 cm⁻¹: torsions and librations) are left alone: a linear step
along a torsion stretches the bonds it should rotate, so the harmonic picture fails
there, and the ETKDG conformers supply the torsional variety instead. A sample whose
covalent bond graph differs from its conformer's (rare) is drawn again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

K_B_KCAL = 0.0019872041  # kcal/mol/K: MMFF works in kcal/mol and Å


@dataclass
class ConformerSettings:
    n_conformers: int = 2  # ETKDG embeddings per molecule (pruned at prune_rms Å)
    samples_per_conformer: int = 2  # thermal samples of each minimum; 0: the minima themselves
    temperature_k: float = 500.0
    prune_rms: float = 0.3
    min_lambda: float = 2.0  # kcal/mol/Å²/amu (~150 cm⁻¹), see the module docstring
    mmff_iterations: int = 500
    max_redraws: int = 5

    def __post_init__(self):
        if not self.n_conformers >= 1:
            raise ValueError(f"conformers per molecule must be >= 1, got {self.n_conformers}")
        if not self.samples_per_conformer >= 0:
            raise ValueError(f"thermal samples per conformer must be >= 0, got {self.samples_per_conformer}")
        if not 0 < self.temperature_k < float("inf"):
            raise ValueError(f"the sampling temperature must be > 0 K, got {self.temperature_k} K")


def _hessian(ff, x: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Central second differences of the MMFF energy (kcal/mol/Å²).

    From the energy, not ``ff.CalcGrad(positions)``: that call's gradient at positions
    other than the force field's own disagrees with the energy's finite differences
    (RDKit 2026.09; methane's C-H stretch comes out at a third of its force constant),
    while these give MMFF's known frequencies (methane 2982 cm⁻¹)."""
    n = x.size
    energy = ff.CalcEnergy
    e0 = energy(x.tolist())
    shifts = np.eye(n) * step
    h = np.empty((n, n))
    for i in range(n):
        xp, xm = x + shifts[i], x - shifts[i]
        h[i, i] = (energy(xp.tolist()) + energy(xm.tolist()) - 2 * e0) / step**2
        for j in range(i):
            plus = energy((xp + shifts[j]).tolist()) - energy((xp - shifts[j]).tolist())
            minus = energy((xm + shifts[j]).tolist()) - energy((xm - shifts[j]).tolist())
            h[i, j] = h[j, i] = (plus - minus) / (4 * step**2)
    return h


def normal_mode_samples(ff, positions: np.ndarray, numbers: np.ndarray, masses: np.ndarray,
                        settings: ConformerSettings, rng: np.random.Generator) -> List[np.ndarray]:
    """``settings.samples_per_conformer`` thermal displacements of a minimum ([n, 3] Å each)."""
    from empp_ff.data.demo.checks import bond_graph

    x = positions.reshape(-1)
    m = np.repeat(masses, 3)
    inv_sqrt_m = 1.0 / np.sqrt(m)
    lam, modes = np.linalg.eigh(_hessian(ff, x) * inv_sqrt_m[:, None] * inv_sqrt_m[None, :])
    # The stiff vibrations only: drops translations, rotations and the soft torsions.
    stiff = lam >= settings.min_lambda
    vibrational, lam = modes[:, stiff], lam[stiff]
    kt = K_B_KCAL * settings.temperature_k
    reference = bond_graph(numbers, positions)
    out = []
    for _ in range(settings.samples_per_conformer):
        for _ in range(settings.max_redraws):
            q = rng.standard_normal(lam.size) * np.sqrt(kt / lam)
            sample = (x + inv_sqrt_m * (vibrational @ q)).reshape(-1, 3)
            if np.array_equal(bond_graph(numbers, sample), reference):
                out.append(sample)
                break
    return out


def molecule_structures(smiles: str, settings: ConformerSettings, seed: int) -> Optional[dict]:
    """{"atomic_numbers", "positions": list of [n, 3]} for one molecule, or None when RDKit
    cannot embed it or MMFF94 lacks parameters."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.pruneRmsThresh = settings.prune_rms
    conf_ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=settings.n_conformers, params=params))
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if not conf_ids or props is None:
        return None
    masses = np.array([a.GetMass() for a in mol.GetAtoms()])
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    rng = np.random.default_rng(seed)
    positions = []
    for cid in conf_ids:
        ff = AllChem.MMFFGetMoleculeForceField(mol, props, confId=cid)
        ff.Minimize(maxIts=settings.mmff_iterations)
        minimum = np.asarray(ff.Positions()).reshape(-1, 3)
        if settings.samples_per_conformer == 0:
            positions.append(minimum)
        else:
            positions.extend(normal_mode_samples(ff, minimum, numbers, masses, settings, rng))
    if not positions:
        return None
    return {"atomic_numbers": numbers, "positions": positions}
