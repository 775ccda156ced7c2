"""Build an unlabelled corpus store: molecules (``.molecules``) -> structures
(``.conformers``) -> the training store (``empp_ff.data.store``), streamed."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from empp_ff.data.corpus.conformers import ConformerSettings, molecule_structures
from empp_ff.data.corpus.molecules import MoleculeFilter, canonical_smiles, enumerate_molecules
from empp_ff.data.structure import Structure


def read_seed_smiles(path: str | os.PathLike) -> List[str]:
    """Seed SMILES from a text file (one per line, the first word; lines starting with
    '#' are comments, '#' inside a SMILES is a triple bond) or from a GEOM-style HDF5
    file (each group's ``smiles`` attribute)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seed SMILES file {path} does not exist")
    if path.suffix in (".h5", ".hdf5"):
        from empp_ff.data.fileio import open_hdf5

        with open_hdf5(path) as f:
            out = [str(g.attrs["smiles"]) for g in f.values() if hasattr(g, "attrs") and "smiles" in g.attrs]
        if not out:
            raise ValueError(f"{path}: no group carries a 'smiles' attribute (a GEOM-style file is expected)")
        return out
    words = [line.split() for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    out = [w[0] for w in words if w]
    if not out:
        raise ValueError(f"{path}: no SMILES found (one per line expected)")
    return out


def canonical_exclusions(smiles: Iterable[str]) -> Dict[str, str]:
    """{canonical SMILES: as given}; a SMILES that does not parse is an error naming it."""
    out = {}
    for s in smiles:
        c = canonical_smiles(s)
        if c is None:
            raise ValueError(f"cannot parse the SMILES to exclude: {s!r}")
        out[c] = s
    return out


def invalid_smiles(smiles: Sequence[str]) -> List[str]:
    """Those of ``smiles`` that RDKit cannot parse."""
    return [s for s in smiles if canonical_smiles(s) is None]


def _seed_problem(invalid: List[str], n_seeds: int) -> str:
    shown = ", ".join(repr(s) for s in invalid[:5]) + (f" and {len(invalid) - 5} more" if len(invalid) > 5 else "")
    return f"{len(invalid)} of the {n_seeds} seed SMILES cannot be parsed by RDKit: {shown}"


def _structures(molecules: Sequence[str], settings: ConformerSettings, seed: int, counts: dict) -> Iterator[Structure]:
    for i, smiles in enumerate(molecules):
        made = molecule_structures(smiles, settings, seed + i)
        if made is None:
            counts["skipped"].append(smiles)
            continue
        counts["molecules"] += 1
        for j, positions in enumerate(made["positions"]):
            counts["structures"] += 1
            yield Structure(made["atomic_numbers"], positions, name=f"{smiles}#{j}")
    if not counts["structures"]:  # the store is not written: an empty corpus trains nothing
        raise ValueError(f"no structure could be made: none of the {len(molecules)} molecule(s) could be "
                         "embedded with MMFF94 parameters; nothing written")


def build_corpus(seed_smiles: Sequence[str], out: str | os.PathLike, n_molecules: int,
                 settings: Optional[ConformerSettings] = None, molecule_filter: Optional[MoleculeFilter] = None,
                 exclude: Sequence[str] = (), seed: int = 0, progress: bool = False,
                 warn: Optional[Callable[[str], None]] = None) -> dict:
    """Write the corpus store ``out`` (atomically); returns its provenance record.

    Seed SMILES RDKit cannot parse are skipped with a warning naming them (``warn``; default
    ``warnings.warn``) and recorded; all of them unparseable, or no structure made, is an error
    and nothing is written."""
    settings = settings or ConformerSettings()
    if not n_molecules >= 1:
        raise ValueError(f"the number of molecules must be >= 1, got {n_molecules}")
    from rdkit import __version__ as rdkit_version

    from empp_ff.data.store import write_store

    invalid = invalid_smiles(seed_smiles)
    if invalid and len(invalid) == len(seed_smiles):
        raise ValueError(_seed_problem(invalid, len(seed_smiles)) + ": no seed to build from")
    if invalid:
        if warn is None:
            import warnings

            warn = warnings.warn
        warn(_seed_problem(invalid, len(seed_smiles)) + "; they are skipped")
    excluded = canonical_exclusions(exclude)
    molecule_filter = molecule_filter or MoleculeFilter()
    molecule_filter = dataclasses.replace(molecule_filter, exclude=set(molecule_filter.exclude) | set(excluded))
    start = time.perf_counter()
    molecules = enumerate_molecules(seed_smiles, n_molecules, molecule_filter, seed=seed)
    if not molecules:
        raise ValueError("no molecule passed the filter (elements, heavy-atom count, neutral, one fragment, "
                         "not excluded): nothing written")
    counts = {"molecules": 0, "structures": 0, "skipped": []}
    provenance = {
        "kind": "empp-ff unlabelled corpus", "rdkit": rdkit_version, "seed": seed,
        "n_seed_smiles": len(seed_smiles), "invalid_seed_smiles": invalid, "n_molecules_requested": n_molecules,
        "n_molecules_enumerated": len(molecules),
        "filter": {k: v for k, v in dataclasses.asdict(molecule_filter).items() if k != "exclude"},
        "excluded_canonical_smiles": sorted(excluded), "conformers": dataclasses.asdict(settings),
        "counts": counts,
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(molecules), unit="mol", desc="corpus", mininterval=2.0)
    structures = _structures(molecules, settings, seed, counts)
    if bar is not None:
        structures = _ticking(structures, bar, counts)
    # The provenance dict is written at the end of the stream, so the counts are final.
    try:
        write_store(structures, out, provenance=provenance, source="rdkit", source_format="corpus")
    finally:
        if bar is not None:
            bar.close()
    provenance["wall_s"] = time.perf_counter() - start
    return provenance


def _ticking(structures: Iterator[Structure], bar, counts: dict) -> Iterator[Structure]:
    done = 0
    for s in structures:
        now = counts["molecules"] + len(counts["skipped"])
        bar.update(now - done)
        done = now
        yield s
