"""GEOM msgpack reader (drugs_crude / qm9_crude schema) on a tiny synthetic file."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

msgpack = pytest.importorskip("msgpack")

from empp_ff.data.conversion import convert  # noqa: E402
from empp_ff.data.readers import detect_format, read_structures  # noqa: E402
from empp_ff.data.store import StructureStore  # noqa: E402

# Two chunks, three molecules, as the published files: a stream of maps SMILES -> molecule.
MOLS = {
    "O": ([8, 1, 1], 3),
    "CO": ([6, 8, 1, 1, 1, 1], 2),
    "N#N": ([7, 7], 1),
}


def _mol(smiles: str, seed: int) -> tuple[dict, list]:
    z, nconf = MOLS[smiles]
    rng = np.random.default_rng(seed)
    confs, ref = [], []
    for k in range(nconf):
        pos = rng.normal(size=(len(z), 3))
        e = -10.0 * len(z) + 0.01 * k  # Hartree
        xyz = [[float(zz), *p] for zz, p in zip(z, pos.tolist())]  # Z stored as float, as in GEOM
        confs.append({"geom_id": 1000 * seed + k, "xyz": xyz, "totalenergy": e, "relativeenergy": 0.5 * k,
                      "boltzmannweight": 1.0 / nconf, "setenergy": e, "degeneracy": 1})
        ref.append((smiles, z, pos, e, 0.5 * k))
    mol = {"conformers": confs, "totalconfs": nconf, "uniqueconfs": nconf, "charge": 0,
           "ensembleenergy": 0.0, "temperature": 298.15, "lowestenergy": confs[0]["totalenergy"]}
    return mol, ref


def _write(path, chunks):
    ref = []
    with open(path, "wb") as fh:
        for names in chunks:
            chunk = {}
            for s in names:
                chunk[s], r = _mol(s, seed=len(ref) + 1)
                ref.extend(r)
            fh.write(msgpack.packb(chunk, use_bin_type=True))
    return ref


@pytest.fixture
def geom_file(tmp_path):
    p = tmp_path / "drugs_crude.msgpack"
    return p, _write(p, [["O", "CO"], ["N#N"]])


def test_detect_and_units(geom_file):
    p, ref = geom_file
    assert detect_format(p) == "geom_msgpack"
    out = list(read_structures(p))
    assert len(out) == len(ref) == 6
    for s, (smiles, z, pos, e, _) in zip(out, ref):
        assert s.name == smiles
        assert s.atomic_numbers.dtype == np.int64 and s.atomic_numbers.tolist() == z
        np.testing.assert_array_equal(s.positions, pos)  # Å, unchanged
        assert s.energy == pytest.approx(e * units.Hartree, rel=1e-12)  # Hartree -> eV
        assert s.forces is None and s.cell is None and not s.pbc.any()


def test_relativeenergy_and_bad_key(geom_file):
    p, ref = geom_file
    out = list(read_structures(p, energy_key="relativeenergy"))
    assert out[1].energy == pytest.approx(ref[1][4] * units.kcal / units.mol)
    with pytest.raises(ValueError, match="unsupported energy_key 'boltzmannweight'"):
        list(read_structures(p, energy_key="boltzmannweight"))


def test_streaming_is_lazy(tmp_path):
    """Conformers of chunk 0 come out before chunk 1 (here: not a map) is ever decoded."""
    p = tmp_path / "bad.msgpack"
    _write(p, [["O"]])
    with open(p, "ab") as fh:
        fh.write(msgpack.packb([1, 2, 3]))
    it = read_structures(p)
    first = [next(it) for _ in range(3)]
    assert [s.name for s in first] == ["O"] * 3
    with pytest.raises(ValueError, match="chunk 1 is a list, expected a map"):
        next(it)


def test_missing_keys_named(tmp_path):
    p = tmp_path / "nox.msgpack"
    p.write_bytes(msgpack.packb({"C": {"conformers": [{"totalenergy": -1.0, "boltzmannweight": 1.0}]}}))
    with pytest.raises(ValueError, match=r"C\[conformer 0\].*Found keys \['boltzmannweight', 'totalenergy'\].*'xyz'"):
        list(read_structures(p))
    p.write_bytes(msgpack.packb({"C": {"totalconfs": 1}}))
    with pytest.raises(ValueError, match="expected \\['conformers'\\]"):
        list(read_structures(p))


def test_missing_energy_is_none(tmp_path):
    p = tmp_path / "drugs_featurized.msgpack"
    p.write_bytes(msgpack.packb({"[HH]": {"conformers": [{"xyz": [[1, 0, 0, 0], [1, 0, 0, 0.74]]}]}}))
    (s,) = list(read_structures(p))
    assert s.energy is None and s.atomic_numbers.tolist() == [1, 1]


def test_convert_cli(geom_file, tmp_path):
    from click.testing import CliRunner

    from empp_ff.cli import main

    p, ref = geom_file
    out = tmp_path / "geom.h5"
    res = CliRunner().invoke(main, ["data", "convert", str(p), str(out)])
    assert res.exit_code == 0, res.output
    assert "6 structures" in res.output
    with StructureStore(out) as st:
        assert st.attrs["source_format"] == "geom_msgpack"
        assert st.n_atoms.tolist() == [3, 3, 3, 6, 6, 2]
        assert st[4].name == "CO" and st[4].energy == pytest.approx(ref[4][3] * units.Hartree)
        assert st.has_energy and not st.has_forces


def test_convert_api_roundtrip(geom_file, tmp_path):
    p, ref = geom_file
    out = convert(p, tmp_path / "s.h5", progress=False)
    with StructureStore(out) as st:
        np.testing.assert_allclose(st.energies(), [r[3] * units.Hartree for r in ref])
        np.testing.assert_array_equal(st[5].positions, ref[5][2])
