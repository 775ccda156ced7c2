"""The model file's layer-wise ("halo") entry points, without LAMMPS.

``empp_ff.testing.halo`` runs the protocol the LAMMPS pair style uses (one-r_max
ghost shells, node features of ghosts copied from their owners between layers,
gradients summed back into the owners) on fake domains in one process. Energies,
per-atom energies, forces and the virial must equal the file's own ``forward`` on
the whole structure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empp_ff.export import HALO_VERSION, load_model_file, read_metadata
from empp_ff.neighbours import neighbour_graph
from empp_ff.testing.halo import decompose, evaluate
from empp_ff.testing.structures import molecular_box

R_MAX = 3.5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from empp_ff.testing.models import make_model

    d = tmp_path_factory.mktemp("halo_models")
    return {
        2: make_model(d / "l2.pt", num_interactions=2, r_max=R_MAX),
        3: make_model(d / "l3.pt", num_interactions=3, r_max=R_MAX),
        "old": make_model(d / "old.pt", num_interactions=2, r_max=R_MAX, layerwise=False),
    }


@pytest.fixture(scope="module")
def loaded(models):
    """The model files, loaded once (loading and first calls take seconds)."""
    return {key: load_model_file(path)[0] for key, path in models.items()}


def _molecules():
    """Two ethanols 2.5 A apart, no cell: a cluster split across domains."""
    from ase.build import molecule

    a = molecule("CH3CH2OH")
    b = molecule("CH3CH2OH")
    b.translate([2.5, 0.3, 0.2])
    return a + b


STRUCTURES = {
    "molecules": _molecules,
    # 11 A box, less than two ghost shells wide: atoms are their own neighbours' images
    "box 11 A": lambda: molecular_box(24, 11.0, seed=1),
    "box 15 A": lambda: molecular_box(60, 15.0, seed=2),
}


def _full_graph(model, atoms):
    pos = atoms.get_positions()
    periodic = bool(atoms.pbc.any())
    ei, sh = neighbour_graph(pos, R_MAX, atoms.cell.array if periodic else None, atoms.pbc)
    inputs = (torch.tensor(pos), torch.tensor(atoms.numbers), torch.tensor(ei), torch.tensor(sh), len(atoms), True)
    with torch.jit.optimized_execution(False):
        out = model(*inputs)
    return {k: v.detach().double().numpy() for k, v in out.items()}, ei.shape[1]


def _assert_equal(res, ref, tol=1e-10):
    assert abs(res["energy"] - float(ref["energy"])) <= tol * abs(float(ref["energy"]))
    assert np.abs(res["node_energy"] - ref["node_energy"]).max() <= tol * np.abs(ref["node_energy"]).max()
    assert np.abs(res["forces"] - ref["forces"]).max() <= tol * np.abs(ref["forces"]).max()
    assert np.abs(res["virial"] - ref["virial"]).max() <= tol * np.abs(ref["virial"]).max()


@pytest.mark.parametrize("layers, structure", [(2, "molecules"), (2, "box 11 A"), (2, "box 15 A"), (3, "box 11 A")])
@pytest.mark.parametrize("grid", [(1, 1, 1), (2, 1, 1), (2, 2, 1)])
@pytest.mark.slow
def test_halo_protocol_equals_forward(loaded, layers, structure, grid):
    model = loaded[layers]
    atoms = STRUCTURES[structure]()
    ref, n_edges = _full_graph(model, atoms)
    res = evaluate(model, atoms, grid)
    # every edge of the structure is evaluated exactly once, on the owner of its receiver
    assert sum(d.edge_index.shape[1] for d in res["domains"]) == n_edges
    assert sum(d.n_local for d in res["domains"]) == len(atoms)
    _assert_equal(res, ref)


def test_too_small_ghost_shell_is_wrong(loaded):
    """The check above can fail: a ghost shell thinner than r_max misses neighbours."""
    model = loaded[2]
    atoms = STRUCTURES["box 15 A"]()
    ref, _ = _full_graph(model, atoms)
    res = evaluate(model, atoms, (2, 1, 1), skin=-0.4 * R_MAX)
    assert np.abs(res["forces"] - ref["forces"]).max() > 1e-3 * np.abs(ref["forces"]).max()


@pytest.mark.slow
def test_float32_file(tmp_path):
    from empp_ff.testing.models import make_model

    model, _ = load_model_file(make_model(tmp_path / "m32.pt", dtype="float32", r_max=R_MAX))
    atoms = STRUCTURES["box 11 A"]()
    ref, _ = _full_graph(model, atoms)
    res = evaluate(model, atoms, (2, 1, 1))
    assert abs(res["energy"] - float(ref["energy"])) <= 1e-6 * abs(float(ref["energy"]))
    assert np.abs(res["forces"] - ref["forces"]).max() <= 1e-4 * np.abs(ref["forces"]).max()


def test_attributes_and_metadata(models, loaded):
    model, meta = loaded[2], read_metadata(models[2])
    assert model.halo_version == HALO_VERSION == meta["halo"]["version"]
    # 8 channels, max_L 1: 8x0e + 8x1o = 32 numbers per atom before layer 1
    assert list(model.halo_comm_dims) == meta["halo"]["comm_dims"] == [32]
    assert meta["halo"]["ghost_cutoff"] == R_MAX
    assert list(loaded[3].halo_comm_dims) == [32, 32]


def test_old_files_have_no_entry_points_and_still_run(models, loaded):
    """A file without the layer-wise pieces (as exported before them) reads and runs."""
    meta = read_metadata(models["old"])
    assert "halo" not in meta and meta["format_version"] == 1
    model = loaded["old"]
    assert not hasattr(model, "halo_prepare") and not hasattr(model, "halo_version")
    new = loaded[2]  # same weights (same seed): same numbers
    atoms = STRUCTURES["box 11 A"]()
    ref, _ = _full_graph(new, atoms)
    old, _ = _full_graph(model, atoms)
    np.testing.assert_array_equal(old["forces"], ref["forces"])


def test_entry_points_reject_misuse(loaded):
    model = loaded[2]
    atoms = STRUCTURES["molecules"]()
    d = decompose(atoms, (2, 1, 1), R_MAX, R_MAX + 1.0)[0]
    pos = torch.tensor(d.positions)
    z = torch.tensor(atoms.numbers[d.atom])
    ei = torch.tensor(d.edge_index)
    zero = torch.zeros(ei.shape[1], 3, dtype=torch.float64)
    with pytest.raises(torch.jit.Error, match="receiver"):
        model.halo_prepare(pos, z, ei.flip(0), zero, d.n_local)  # ghosts as receivers
    ctx = model.halo_prepare(pos, z, ei, zero, d.n_local)
    with pytest.raises(torch.jit.Error, match="None for t = 0"):
        model.halo_layer(1, ctx, None, d.n_local)
    with pytest.raises(torch.jit.Error, match="t must lie"):
        model.halo_layer(2, ctx, torch.zeros(len(d.atom), 32), d.n_local)
    with pytest.raises(torch.jit.Error, match="one row per node"):
        model.halo_layer(1, ctx, torch.zeros(d.n_local, 32), d.n_local)
