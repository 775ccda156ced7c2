"""Which molecules go into an unlabelled corpus: seeds, their BRICS fragments, and
BRICS recombinations, filtered and de-duplicated by canonical SMILES."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Set

# The elements of the GEOM-like drugs: MMFF94 parameterises them all.
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "F", "S", "Cl")


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import BRICS
    except ImportError as exc:
        raise ImportError("building a corpus needs RDKit: pip install 'empp-ff[corpus]' (or: pip install rdkit)") \
            from exc
    RDLogger.DisableLog("rdApp.*")  # BRICS recombination tries many invalid valences on purpose
    return Chem, BRICS


def canonical_smiles(smiles: str) -> Optional[str]:
    """RDKit's canonical SMILES (isomeric), or None when ``smiles`` does not parse."""
    Chem, _ = _rdkit()
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


@dataclass
class MoleculeFilter:
    """What a corpus molecule may be: these elements, this many heavy atoms, neutral,
    one connected molecule, not one of ``exclude`` (canonical SMILES)."""

    elements: Sequence[str] = DEFAULT_ELEMENTS
    min_heavy_atoms: int = 3
    max_heavy_atoms: int = 24
    exclude: Set[str] = field(default_factory=set)

    def accepts(self, mol) -> Optional[str]:
        """The molecule's canonical SMILES when it passes, else None."""
        Chem, _ = _rdkit()
        try:
            Chem.SanitizeMol(mol)
        except Exception:  # RDKit raises several types for bad valences/aromaticity
            return None
        if len(Chem.GetMolFrags(mol)) != 1 or not self.min_heavy_atoms <= mol.GetNumHeavyAtoms() <= \
                self.max_heavy_atoms:
            return None
        allowed = set(self.elements)
        for atom in mol.GetAtoms():
            if atom.GetSymbol() not in allowed or atom.GetFormalCharge() != 0 or atom.GetNumRadicalElectrons():
                return None
        smiles = Chem.MolToSmiles(mol)
        return None if smiles in self.exclude else smiles


def capped_fragment(fragment_smiles: str):
    """A BRICS fragment with its attachment points ([n*]) replaced by hydrogen."""
    Chem, _ = _rdkit()
    mol = Chem.MolFromSmiles(fragment_smiles)
    if mol is None:
        return None
    rw = Chem.RWMol(mol)
    for atom in rw.GetAtoms():
        if atom.GetAtomicNum() == 0:
            atom.SetAtomicNum(1)
            atom.SetIsotope(0)
    try:
        return Chem.RemoveHs(rw.GetMol())
    except Exception:
        return None


def enumerate_molecules(seed_smiles: Iterable[str], n_molecules: int, molecule_filter: MoleculeFilter,
                        seed: int = 0, pool_factor: int = 4, max_tries: int = 400_000) -> List[str]:
    """Up to ``n_molecules`` canonical SMILES, spread evenly over sizes.

    The pool: every accepted seed and capped BRICS fragment, then BRICS recombinations
    of the fragments (drawn in a seeded, scrambled order) until it holds
    ``pool_factor * n_molecules`` molecules or ``max_tries`` products were tried.
    The accepted seeds always go in; the rest of the pick takes molecules round-robin
    over heavy-atom counts, because recombinations are mostly large (two or three drug
    fragments) and small molecules, which are what most single-molecule force fields
    are trained on, must not be crowded out."""
    Chem, BRICS = _rdkit()
    seeds = [m for m in (Chem.MolFromSmiles(s) for s in seed_smiles) if m is not None]
    fragments = sorted({f for m in seeds for f in BRICS.BRICSDecompose(m)})
    accepted_seeds = list(dict.fromkeys(filter(None, (molecule_filter.accepts(Chem.Mol(m)) for m in seeds))))
    pool: dict = dict.fromkeys(accepted_seeds)
    for mol in (capped_fragment(f) for f in fragments):
        smiles = molecule_filter.accepts(mol) if mol is not None else None
        if smiles:
            pool.setdefault(smiles, None)
    wanted = pool_factor * n_molecules
    if len(pool) < wanted and fragments:
        state = random.getstate()
        random.seed(seed)  # BRICSBuild's scrambleReagents draws from Python's global generator
        try:
            products = BRICS.BRICSBuild([Chem.MolFromSmiles(f) for f in fragments], scrambleReagents=True,
                                        maxDepth=2)
            for product in itertools.islice(products, max_tries):
                smiles = molecule_filter.accepts(product)
                if smiles:
                    pool.setdefault(smiles, None)
                    if len(pool) >= wanted:
                        break
        finally:
            random.setstate(state)
    chosen = accepted_seeds[:n_molecules]
    rest = [smiles for smiles in pool if smiles not in set(chosen)]
    return chosen + _spread_over_sizes(rest, n_molecules - len(chosen), random.Random(seed))


def _spread_over_sizes(pool: List[str], n: int, rng: random.Random) -> List[str]:
    """``n`` of ``pool``, taken in turn from each heavy-atom count (shuffled within one)."""
    Chem, _ = _rdkit()
    by_size: dict = {}
    for smiles in pool:
        by_size.setdefault(Chem.MolFromSmiles(smiles).GetNumHeavyAtoms(), []).append(smiles)
    for group in by_size.values():
        rng.shuffle(group)
    picked: List[str] = []
    while len(picked) < n and any(by_size.values()):
        for size in sorted(by_size):
            if by_size[size] and len(picked) < n:
                picked.append(by_size[size].pop())
    return picked
