"""Issue 10, data cases: bad data files end in an error naming the file, the frame and
the field (cases 1 and 7), never in a silent wrong result; `data info` reads any format
(case 10)."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from empp_ff.cli import main
from empp_ff.data.conversion import convert
from empp_ff.data.readers import read_structures
from empp_ff.data.store import StructureStore
from empp_ff.data.validation import DataError

Z = np.array([8, 1, 1])


def _md17(path, n=6, nan_frames=(), field="R", seed=0):
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(n, 3, 3)) + np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    E = rng.normal(size=(n,)) - 100.0
    F = rng.normal(size=(n, 3, 3))
    arrays = {"R": R, "E": E, "F": F}
    for i in nan_frames:
        if field == "E":
            arrays["E"][i] = np.nan
        else:
            arrays[field][i, 1, 2] = np.nan
    np.savez(path, z=Z, **arrays)
    return path


def _cli(args):
    return CliRunner().invoke(main, args)


def _assert_clean_error(result, *needles):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for needle in needles:
        assert needle in result.output, (needle, result.output)


# --- case 1: NaN positions / energies / forces / cells ------------------------------

@pytest.mark.parametrize("nan_frames", [(3,), (0, 1, 2), tuple(range(6))], ids=["one", "half", "all"])
def test_nan_positions_are_an_error_naming_file_frame_field(tmp_path, nan_frames):
    p = _md17(tmp_path / "bad.npz", nan_frames=nan_frames)
    expected = rf"bad.npz: frame {nan_frames[0]}\b[^:]*: non-finite \(NaN/inf\) positions of atom\(s\) \[1\]"
    with pytest.raises(DataError, match=expected):
        list(read_structures(p))


def test_nan_energy_is_an_error_not_an_unlabelled_frame(tmp_path):
    p = _md17(tmp_path / "e.npz", nan_frames=(2,), field="E")
    with pytest.raises(DataError, match=r"e.npz: frame 2\b[^:]*: non-finite \(NaN/inf\) energy \(nan\)"):
        list(read_structures(p))


def test_nan_forces_and_cell_are_errors(tmp_path):
    import ase.io
    from ase import Atoms

    p = _md17(tmp_path / "f.npz", nan_frames=(4,), field="F")
    with pytest.raises(DataError, match=r"frame 4 .*forces of atom\(s\) \[1\]"):
        list(read_structures(p))
    good = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    bad = good.copy()
    bad.cell[2, 2] = np.inf
    q = tmp_path / "c.extxyz"
    ase.io.write(q, [good, bad], format="extxyz")
    with pytest.raises(DataError, match=r"c.extxyz: frame 1: non-finite \(NaN/inf\) cell"):
        list(read_structures(q))


def test_drop_nonfinite_opt_in_drops_and_counts(tmp_path):
    p = _md17(tmp_path / "bad.npz", nan_frames=(0, 3))
    store = convert(p, tmp_path / "s.h5", drop_nonfinite=True, progress=False)
    with StructureStore(store) as s:
        assert len(s) == 4 and s.attrs["n_dropped_nonfinite"] == 2
        assert all(np.isfinite(x.positions).all() for x in s)
    result = _cli(["data", "convert", str(p), str(tmp_path / "t.h5"), "--drop-nonfinite"])
    assert result.exit_code == 0 and "2 frame(s) with NaN/inf values dropped" in result.output
    everything = _md17(tmp_path / "all.npz", nan_frames=range(6))
    with pytest.raises(DataError, match="all 6 frames hold non-finite values"):
        convert(everything, tmp_path / "u.h5", drop_nonfinite=True, progress=False)


def test_training_on_nan_positions_fails_before_training(tmp_path, tiny_train_overrides):
    p = _md17(tmp_path / "bad.npz", n=40, nan_frames=(7,))
    args = ["train"]
    for kv in tiny_train_overrides(tmp_path / "run", epochs=1, **{"data.path": p}):
        args += ["--set", kv]
    result = _cli(args)
    _assert_clean_error(result, "bad.npz: frame 7 ('bad'): non-finite (NaN/inf) positions", "data.drop_nonfinite")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_training_with_drop_nonfinite_reports_the_count(tmp_path, tiny_train_overrides):
    p = _md17(tmp_path / "bad.npz", n=40, nan_frames=(7, 9, 30))
    args = ["train"]
    for kv in tiny_train_overrides(tmp_path / "run", epochs=1, **{"data.path": p, "data.drop_nonfinite": "true",
                                                                  "data.n_test": 10}):
        args += ["--set", kv]
    result = _cli(args)
    assert result.exit_code == 0, result.output
    assert "dropped 3 frame(s)" in result.output
    with StructureStore(tmp_path / "run" / "data" / "bad.h5") as store:
        assert len(store) == 37 and np.isfinite(store.energies()).all()


def test_store_writer_refuses_nan_energy(tmp_path):
    from empp_ff.data.store import write_store
    from empp_ff.data.structure import Structure

    s = Structure(atomic_numbers=[1, 1], positions=[[0, 0, 0], [0.74, 0, 0]], energy=float("nan"))
    with pytest.raises(DataError, match=r"s.h5: structure 0: non-finite \(NaN/inf\) energy"):
        write_store([s], tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


# --- case 1: GEOM groups missing labels --------------------------------------------

def _geom(path, energy_in=("a", "b", "c"), forces_in=("a", "b", "c")):
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        for name in ("a", "b", "c"):
            g = f.create_group(name)
            g["atomic_numbers"] = np.array([6, 8])
            g["positions"] = rng.normal(size=(2, 2, 3)) + [[0, 0, 0], [1.2, 0, 0]]
            if name in energy_in:
                g["energy"] = np.array([-10.0, -11.0])
            if name in forces_in:
                g["forces"] = rng.normal(size=(2, 2, 3))
    return path


def test_geom_group_missing_energy_is_an_error(tmp_path):
    p = _geom(tmp_path / "g.h5", energy_in=("a", "c"))
    with pytest.raises(DataError, match=r"g.h5: frame 2 \('b'\) has no energy while frame 0 \('a'\) has one"):
        list(read_structures(p))
    p = _geom(tmp_path / "h.h5", forces_in=("b", "c"))
    with pytest.raises(DataError, match=r"h.h5: frame 0 \('a'\) has no forces while frame 2 \('b'\) has one"):
        list(read_structures(p))


def test_geom_missing_labels_opt_in_keeps_and_counts(tmp_path):
    p = _geom(tmp_path / "g.h5", energy_in=("a", "c"))
    out = convert(p, tmp_path / "s.h5", allow_missing_labels=True, progress=False)
    with StructureStore(out) as s:
        assert len(s) == 6 and s.attrs["n_missing_labels_kept"] == 2
        assert [x.energy is None for x in s] == [False, False, True, True, False, False]
    consistent = _geom(tmp_path / "e.h5", energy_in=(), forces_in=())  # unlabelled throughout: fine
    assert all(x.energy is None for x in read_structures(consistent))


def test_geom_msgpack_conformer_missing_energy_is_an_error(tmp_path):
    msgpack = pytest.importorskip("msgpack")
    xyz = [[1, 0, 0, 0], [1, 0, 0, 0.74]]
    p = tmp_path / "drugs.msgpack"
    p.write_bytes(msgpack.packb({"[HH]": {"conformers": [{"xyz": xyz, "totalenergy": -1.1}, {"xyz": xyz}]}}))
    with pytest.raises(DataError, match=r"frame 1 \('\[HH\]'\) has no energy"):
        list(read_structures(p))


# --- case 7: unreadable files -------------------------------------------------------

def _broken_files(tmp_path):
    good = _md17(tmp_path / "good.npz")
    data = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("this is not an archive\n")
    (tmp_path / "empty.h5").write_bytes(b"")
    return {
        "truncated.npz": "probably truncated",
        "empty.npz": "the file is empty (0 bytes)",
        "text.npz": "is not a NumPy .npz archive",
        "empty.h5": "the file is empty (0 bytes)",
    }


def test_unreadable_files_give_clear_errors(tmp_path):
    for name, cause in _broken_files(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(DataError, match="(?s)" + re.escape(name) + ".*" + re.escape(cause)):
            list(read_structures(path))
        for args in (["data", "convert", str(path), str(tmp_path / "out.h5")], ["data", "info", str(path)]):
            _assert_clean_error(_cli(args), name, cause)


def test_training_on_unreadable_file_has_no_traceback(tmp_path, tiny_train_overrides):
    _broken_files(tmp_path)
    for name in ("truncated.npz", "empty.npz", "text.npz", "empty.h5"):
        args = ["train"]
        for kv in tiny_train_overrides(tmp_path / f"run_{name}", **{"data.path": tmp_path / name}):
            args += ["--set", kv]
        _assert_clean_error(_cli(args), name)


def test_unparsable_ase_files_are_named_not_the_store(tmp_path, tiny_train_overrides):
    """Issue 19: a garbage .xyz was reported under the name of the store it was converted to
    (run_dir/data/garbage.h5); a garbage .db gave sqlite3's traceback."""
    (tmp_path / "garbage.xyz").write_text("this is not\nan xyz file at all\n")
    (tmp_path / "garbage.db").write_text("this is not a database\n")
    for name, cause in (("garbage.xyz", "cannot read it as extended XYZ (frame 0: XYZError: "),
                        ("garbage.db", "cannot read it as an ASE database (frame 0: DatabaseError: ")):
        path = tmp_path / name
        args = ["train"] + [a for kv in tiny_train_overrides(tmp_path / f"run_{name}", **{"data.path": path})
                            for a in ("--set", kv)]
        for result in (_cli(["data", "convert", str(path), str(tmp_path / "out.h5")]), _cli(args)):
            _assert_clean_error(result, f"'{path}': {cause}")
            (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert ".h5" not in error, error


# --- case 10: data info on any supported format -------------------------------------

def test_data_info_reads_every_format(tmp_path):
    import ase.io
    from ase import Atoms

    npz = _md17(tmp_path / "w.npz")
    xyz = tmp_path / "w.extxyz"
    ase.io.write(xyz, [Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])] * 3, format="extxyz")
    geom = _geom(tmp_path / "g.h5")
    store = convert(npz, tmp_path / "s.h5", progress=False)
    expected = {npz: ("md17", 6, [1, 8]), xyz: ("extxyz", 3, [1]), geom: ("geom_h5", 6, [6, 8]),
                store: ("store", 6, [1, 8])}
    for path, (fmt, n, species) in expected.items():
        result = _cli(["data", "info", str(path)])
        assert result.exit_code == 0, result.output
        info = json.loads(result.output)
        assert (info["format"], info["n_structures"], info["species"]) == (fmt, n, species)
    info = json.loads(_cli(["data", "info", str(npz)]).output)
    assert info["n_with_energy"] == 6 and info["n_with_forces"] == 6
    assert info["atoms_per_structure"] == {"min": 3, "max": 3, "mean": 3.0}


# --- issue 28: outputs over inputs, the corpus's misleading results, an empty store ---------

def _digests(folder):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line_error(result, *needles):
    _assert_clean_error(result, *needles)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and all(n in errors[0] for n in needles), result.output


@pytest.mark.parametrize("how", ["same-name", "hard-link", "symlink"])
def test_convert_onto_its_source_is_refused(tmp_path, how):
    import os

    source = _md17(tmp_path / "a.npz")
    out = {"same-name": source, "hard-link": tmp_path / "b.npz", "symlink": tmp_path / "c.npz"}[how]
    if how == "hard-link":
        os.link(source, out)
    elif how == "symlink":
        out.symlink_to(source)
    before = _digests(tmp_path)
    _one_line_error(_cli(["data", "convert", str(source), str(out)]), "the output OUT", "is the input SOURCE")
    assert _digests(tmp_path) == before  # before: the npz was replaced by an HDF5 store


@pytest.fixture
def seeds(tmp_path):
    pytest.importorskip("rdkit")
    path = tmp_path / "seeds.smi"
    path.write_text("CCO\nc1ccccc1O\n")
    (tmp_path / "corpus.h5").write_bytes(b"an earlier corpus")
    return path


def _corpus(tmp_path, seeds_file, *args):
    return _cli(["data", "corpus", str(tmp_path / "corpus.h5"), "--seeds", str(seeds_file), "--conformers", "1",
                 "--samples", "1", *map(str, args)])


@pytest.mark.parametrize("case", ["negative-temperature", "zero-molecules", "zero-conformers", "out-is-seeds"])
def test_corpus_options_that_make_nothing_are_errors(tmp_path, seeds, case):
    args, message = {
        "negative-temperature": (["--temperature", -100], "the sampling temperature must be > 0 K, got -100.0 K"),
        "zero-molecules": (["--molecules", 0], "the number of molecules must be >= 1, got 0"),
        "zero-conformers": (["--conformers", 0], "conformers per molecule must be >= 1, got 0"),
        "out-is-seeds": ([], "the output OUT"),
    }[case]
    before = _digests(tmp_path)
    if case == "out-is-seeds":
        result = _cli(["data", "corpus", str(seeds), "--seeds", str(seeds)])
    else:
        result = _corpus(tmp_path, seeds, *args)
    _one_line_error(result, message)
    assert "MMFF94" not in result.output  # was: exit 0, "0 structures ... lack MMFF94 parameters"
    assert _digests(tmp_path) == before


def test_invalid_seed_smiles_are_named(tmp_path, seeds):
    seeds.write_text("CCO\nC1CC\nnot_a_smiles\nc1ccccc1O\n")
    result = _corpus(tmp_path, seeds, "--molecules", 2)
    assert result.exit_code == 0, result.output
    assert "Warning: 2 of the 4 seed SMILES cannot be parsed by RDKit: 'C1CC', 'not_a_smiles'; they are skipped" \
        in result.output
    with StructureStore(tmp_path / "corpus.h5") as store:
        assert store.provenance["invalid_seed_smiles"] == ["C1CC", "not_a_smiles"] and len(store) > 0
    seeds.write_text("C1CC\nxyz\n")
    before = _digests(tmp_path)
    _one_line_error(_corpus(tmp_path, seeds, "--molecules", 2), "2 of the 2 seed SMILES cannot be parsed",
                    "no seed to build from")
    assert _digests(tmp_path) == before


def test_a_corpus_of_no_structure_is_not_written(tmp_path, seeds):
    seeds.write_text("[Na+].[Cl-]\nC\n")  # parse, but no molecule passes the filter
    before = _digests(tmp_path)
    _one_line_error(_corpus(tmp_path, seeds, "--molecules", 2), "no molecule passed the filter")
    assert _digests(tmp_path) == before  # before: exit 0 and an empty store


def test_training_on_an_empty_store_names_it(tmp_path, tiny_train_overrides):
    from empp_ff.data.store import write_store

    empty = tmp_path / "empty.h5"
    write_store([], empty)
    before = _digests(tmp_path)
    overrides = tiny_train_overrides(tmp_path / "run", epochs=1, **{"data.path": str(empty), "task": "pretrain",
                                                                   "empp.enabled": True})
    result = _cli(["train", *[a for kv in overrides for a in ("--set", kv)]])
    _one_line_error(result, f"{empty} holds no structures")
    assert "compute_statistics" not in result.output
    assert _digests(tmp_path) == before


def test_a_signalled_corpus_build_ends_cleanly(tmp_path, seeds):
    """SIGTERM while the store is being written: one line, 143, no temporary, the earlier file as it was."""
    import signal

    from empp_ff.testing.processes import cli_process, stop_when, temporaries

    seeds.write_text("CC(=O)Oc1ccccc1C(=O)O\nCC(=O)Nc1ccc(O)cc1\nCOc1ccc2cc([C@H](C)C(=O)O)ccc2c1\n")
    before = _digests(tmp_path)
    proc = cli_process(["data", "corpus", "corpus.h5", "--seeds", seeds, "--molecules", 200, "--samples", 4],
                       tmp_path)
    status, _, stderr = stop_when(proc, lambda: bool(temporaries(tmp_path)), signal.SIGTERM)
    assert status == 143, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "Error: stopped by SIGTERM", stderr[-2000:]
    assert not temporaries(tmp_path) and _digests(tmp_path) == before
