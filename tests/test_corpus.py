"""The unlabelled pre-training corpus (`empp-ff data corpus`): which molecules, how their
structures are sampled (classical normal-mode statistics), the store it writes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rdkit")

from empp_ff.data.corpus.build import build_corpus, canonical_exclusions, read_seed_smiles  # noqa: E402
from empp_ff.data.corpus.conformers import ConformerSettings, molecule_structures  # noqa: E402
from empp_ff.data.corpus.molecules import MoleculeFilter, canonical_smiles, enumerate_molecules  # noqa: E402
from empp_ff.data.demo.checks import bond_graph  # noqa: E402
from empp_ff.data.store import StructureStore  # noqa: E402

SEEDS = ["CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1", "COc1ccc2cc([C@H](C)C(=O)O)ccc2c1"]


def test_excluded_molecules_are_recognised_in_any_spelling():
    aspirin_other_spelling = "OC(=O)c1ccccc1OC(C)=O"
    excluded = canonical_exclusions([aspirin_other_spelling])
    molecules = enumerate_molecules(SEEDS, 40, MoleculeFilter(exclude=set(excluded)), seed=0)
    assert canonical_smiles(SEEDS[0]) in excluded and canonical_smiles(SEEDS[0]) not in molecules
    assert canonical_smiles(SEEDS[1]) in molecules  # the other seeds are in
    assert len(molecules) == len(set(molecules)) == 40  # fragments and recombinations fill the count
    with pytest.raises(ValueError, match="cannot parse the SMILES to exclude: 'C1CC'"):
        canonical_exclusions(["C1CC"])


def test_filter_refuses_other_elements_charges_and_sizes():
    from rdkit import Chem

    f = MoleculeFilter(max_heavy_atoms=8)
    assert f.accepts(Chem.MolFromSmiles("OCC(=O)O")) == "O=C(O)CO"
    for smiles in ("CC[Br]", "CC(=O)[O-]", "CCCCCCCCCC", "CCO.O"):
        assert f.accepts(Chem.MolFromSmiles(smiles)) is None, smiles


def test_thermal_samples_keep_bonds_and_scale_with_temperature():
    """Classical harmonic statistics: the mean-square displacement from the minimum is
    proportional to T (here 400 K against 100 K: 4x), and no sample breaks a bond."""
    msd = {}
    for temperature in (100.0, 400.0):
        settings = ConformerSettings(n_conformers=1, samples_per_conformer=60, temperature_k=temperature)
        made = molecule_structures("CC(=O)Nc1ccc(O)cc1", settings, seed=5)
        minimum = molecule_structures("CC(=O)Nc1ccc(O)cc1", ConformerSettings(n_conformers=1,
                                      samples_per_conformer=0), seed=5)["positions"][0]
        z = made["atomic_numbers"]
        reference = bond_graph(z, minimum)
        assert len(made["positions"]) == 60
        for sample in made["positions"]:
            assert np.array_equal(bond_graph(z, sample), reference)
        msd[temperature] = np.mean([np.mean((p - minimum) ** 2) for p in made["positions"]])
    assert 3.5 < msd[400.0] / msd[100.0] <= 4.0, msd  # 4 for a Gaussian; redrawn bond-breaking tails lower it
    assert 0.002 < msd[400.0] < 0.02  # Å² per coordinate: stiff vibrations only, torsions come from conformers


def test_corpus_store_is_unlabelled_and_records_what_made_it(tmp_path):
    seeds = tmp_path / "seeds.smi"
    seeds.write_text("# drug-like seeds\n" + "\n".join(f"{s}  name{i}" for i, s in enumerate(SEEDS)) + "\nC#N\n")
    assert read_seed_smiles(seeds)[-1] == "C#N"  # '#' inside a SMILES is a triple bond, not a comment
    out = tmp_path / "corpus.h5"
    prov = build_corpus(read_seed_smiles(seeds), out, 6, ConformerSettings(n_conformers=1, samples_per_conformer=2),
                        exclude=["CC(=O)Nc1ccc(O)cc1"], seed=1)
    with StructureStore(out) as store:
        assert not store.has_energy and not store.has_forces
        assert len(store) == prov["counts"]["structures"] > 0
        names = {store[i].name.split("#")[0] for i in range(len(store))}
        recorded = store.provenance
    assert "CC(=O)Nc1ccc(O)cc1" not in names
    assert recorded["excluded_canonical_smiles"] == ["CC(=O)Nc1ccc(O)cc1"]
    assert recorded["counts"]["molecules"] == len(names) and recorded["conformers"]["temperature_k"] == 500.0


def test_cli_names_bad_inputs(tmp_path):
    from click.testing import CliRunner

    from empp_ff.cli import main

    empty = tmp_path / "empty.smi"
    empty.write_text("# nothing\n")
    result = CliRunner().invoke(main, ["data", "corpus", str(tmp_path / "c.h5"), "--seeds", str(empty)])
    assert result.exit_code != 0 and "no SMILES found" in result.output and "Traceback" not in result.output
    seeds = tmp_path / "seeds.smi"
    seeds.write_text("CCO\n")
    result = CliRunner().invoke(main, ["data", "corpus", str(tmp_path / "c.h5"), "--seeds", str(seeds),
                                       "--exclude", "C1CC"])
    assert result.exit_code != 0 and "'C1CC'" in result.output
    assert not (tmp_path / "c.h5").exists()
