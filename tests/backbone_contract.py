"""The contract every backbone keeps, as a test mixin (in the style of nequip's model tests).

A test class subclasses :class:`BackboneContract` and provides the fixture ``spec``: a
float64 ``BackboneSpec`` of its backbone for the elements H, C, O (``contract_spec``).
``tests/test_backbone_contract.py`` runs it for every registered backbone, and
``tests/test_backbone_registry.py`` for a toy one registered by a test. What it checks:
E invariant and F, node features equivariant under rotations, inversion, translations and
permutations; F = −dE/dx by finite differences; the virial of a molecule; a smooth energy as
a neighbour crosses r_max; batched graphs equal separate ones; EMPP's conditioning hooks act
only inside their block; the element-indexed weights carried to a model of more elements
reproduce the source; and (slow) the model file equals the in-memory potential, its metadata
records the backbone's description, and the halo protocol equals the file's forward.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from empp_ff.model.backbone import description
from empp_ff.model.transfer import element_layouts, transfer_weights
from empp_ff.neighbours import neighbour_graph
from empp_ff.testing.batches import collate, molecule_graph
from empp_ff.testing.models import demo_potential, demo_spec
from empp_ff.testing.structures import molecular_box, separated_cluster

R_MAX = 3.5
ELEMENTS = (1, 6, 8)


def contract_spec(backbone: str, elements=ELEMENTS, **fields):
    """A small float64 spec of ``backbone``: the suite's tiny model (``conftest.TINY_MODEL``;
    fields another backbone does not use are ignored), its own fields at their defaults."""
    from conftest import TINY_MODEL

    return demo_spec(elements, **{**TINY_MODEL, "backbone": backbone, "r_max": R_MAX, "dtype": "float64",
                                  "scale": 0.7, "shift": 0.1, **fields})


def build(spec, seed=0):
    """A potential of ``spec``, perturbed far from its nearly flat initialisation; skipped
    where the backbone's packages are not installed."""
    try:
        return demo_potential(spec, seed=seed, perturb=0.1)
    except ImportError as exc:
        pytest.skip(str(exc))


def run(potential, pos, z, cell=None, **kw):
    """The potential on one structure (numpy positions), periodic when ``cell`` is given."""
    ei, shifts = neighbour_graph(pos, R_MAX, cell, None if cell is None else [True] * 3)
    n = len(z)
    return potential(torch.tensor(pos), torch.tensor(z), torch.tensor(ei), torch.tensor(shifts),
                     torch.zeros(n, dtype=torch.long), 1, **kw)


def rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


class BackboneContract:
    @pytest.fixture(scope="class")
    @classmethod
    def potential(cls, spec):
        return build(spec)

    def test_symmetries(self, potential):
        from empp_ff.model._imports import import_e3nn_o3

        pos, z = separated_cluster(0, 9)
        ref = run(potential, pos, z)
        assert ref["forces"].abs().max() > 1e-3  # not trivially zero
        irreps = import_e3nn_o3().Irreps(str(potential.backbone.feature_irreps()))
        assert any(ir.l == 1 and ir.p == -1 for _, ir in irreps), f"no 1o features for EMPP's head: {irreps}"
        for q in (rotation(1), -np.eye(3), -rotation(2)):
            moved = run(potential, pos @ q.T + np.array([0.3, -1.0, 2.0]), z)
            torch.testing.assert_close(moved["energy"], ref["energy"], rtol=0, atol=1e-10)
            torch.testing.assert_close(moved["forces"], ref["forces"] @ torch.tensor(q).T, rtol=0, atol=1e-10)
            d = irreps.D_from_matrix(torch.tensor(q))
            torch.testing.assert_close(moved["node_feats"], ref["node_feats"] @ d.T, rtol=0, atol=1e-9)
        perm = np.random.default_rng(2).permutation(len(z))
        permuted = run(potential, pos[perm], z[perm])
        torch.testing.assert_close(permuted["node_energy"], ref["node_energy"][perm], rtol=0, atol=1e-10)
        torch.testing.assert_close(permuted["forces"], ref["forces"][perm], rtol=0, atol=1e-10)

    def test_forces_are_minus_the_energy_gradient(self, potential):
        pos, z = separated_cluster(3, 9)
        forces = run(potential, pos, z)["forces"].numpy()
        h = 1e-5
        for i, k in [(0, 0), (3, 1), (5, 2), (8, 0)]:
            plus, minus = pos.copy(), pos.copy()
            plus[i, k] += h
            minus[i, k] -= h
            fd = -(float(run(potential, plus, z, compute_forces=False)["energy"].detach())
                   - float(run(potential, minus, z, compute_forces=False)["energy"].detach())) / (2 * h)
            assert fd == pytest.approx(forces[i, k], abs=1e-7, rel=1e-6)

    def test_virial_of_a_molecule_is_the_sum_of_r_outer_f(self, potential):
        pos, z = separated_cluster(4, 9)
        out = run(potential, pos, z, compute_virial=True)
        torch.testing.assert_close(out["virial"][0], torch.einsum("ni,nj->ij", torch.tensor(pos), out["forces"]),
                                   rtol=0, atol=1e-10)

    def test_energy_is_smooth_as_a_neighbour_crosses_r_max(self, potential):
        z = np.array([6, 1, 8])
        out = [run(potential, np.array([[0.0, 0, 0], [0, 0, 1.1], [0, 0, R_MAX + s]]), z) for s in (-1e-6, 1e-6)]
        assert abs(float(out[0]["energy"].detach()) - float(out[1]["energy"].detach())) < 1e-7
        assert (out[0]["forces"] - out[1]["forces"]).abs().max() < 1e-4

    def test_batched_graphs_equal_separate_ones(self, potential):
        graphs = []
        for seed, n in [(5, 7), (6, 9), (7, 5)]:
            pos, z = separated_cluster(seed, n)
            graphs.append(molecule_graph(torch.tensor(pos), torch.tensor(z), R_MAX))
        together = self._batched(potential, collate(graphs))
        alone = [self._batched(potential, collate([graph])) for graph in graphs]
        for key in ("energy", "forces", "node_feats"):
            torch.testing.assert_close(together[key], torch.cat([a[key] for a in alone]), rtol=0, atol=1e-10)

    @staticmethod
    def _batched(potential, b):
        return potential(b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, int(b.num_graphs))

    def test_conditioning_acts_inside_its_block_only(self, potential):
        backbone = potential.backbone
        pos, z = separated_cluster(9, 9)
        b = collate([molecule_graph(torch.tensor(pos), torch.tensor(z), R_MAX)])
        args = (b.positions, b.atomic_numbers, b.edge_index, b.shifts)
        before = backbone(*args)
        vectors = [torch.randn(1, irreps.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
                   for irreps in backbone.message_irreps()]
        with backbone.conditioning(vectors, b.batch):
            on = backbone(*args)
        after = backbone(*args)
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
        assert not torch.allclose(on[0], before[0])
        with backbone.conditioning([None] * len(vectors), b.batch):
            assert torch.equal(backbone(*args)[0], before[0])
        with pytest.raises(ValueError, match="one entry per"):
            with backbone.conditioning(vectors + vectors, b.batch):
                pass

    def test_weights_carried_to_more_elements_reproduce_the_source(self, spec, potential):
        """Every parameter indexed by the species list is declared (``element_indexed_parameters``):
        carried by atomic number into a model that also knows N, the model is the source on H C O."""
        target = build(dataclasses.replace(spec, atomic_numbers=[1, 6, 7, 8],
                                         atomic_energies=demo_spec((1, 6, 7, 8)).atomic_energies), seed=1)
        report = transfer_weights(potential, target, ELEMENTS, (1, 6, 7, 8))
        assert sorted(report.by_element) == sorted(element_layouts(target))
        pos, z = separated_cluster(3, 9)
        ref, carried = run(potential, pos, z), run(target, pos, z)
        torch.testing.assert_close(carried["node_energy"], ref["node_energy"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(carried["forces"], ref["forces"], rtol=1e-10, atol=1e-10)

    def test_the_elements_part_holds_every_element_indexed_parameter(self, spec, potential):
        fragments = description(spec.backbone).reinit_fragments(["elements"])
        named = {n for n, _ in potential.named_parameters() if any(f in n for f in fragments)}
        assert named and set(element_layouts(potential)) <= named

    @pytest.mark.slow
    def test_model_file_equals_the_potential_and_records_the_backbone(self, spec, potential, tmp_path_factory):
        from click.testing import CliRunner

        from empp_ff.cli import main
        from empp_ff.export import export_potential, load_model_file, read_metadata

        path = export_potential(potential, tmp_path_factory.mktemp("contract") / f"{spec.backbone}.pt")
        meta = read_metadata(path)
        entry = description(spec.backbone)
        assert meta["backbone"] == spec.backbone and meta["num_interactions"] == potential.num_interactions
        assert set(entry.packages) <= set(meta["versions"])
        info = CliRunner().invoke(main, ["info", str(path)])
        assert info.exit_code == 0 and entry.describe(spec) in info.output
        model = load_model_file(path)[0]
        atoms = molecular_box(24, 11.0, seed=1)
        pos = atoms.get_positions()
        ei, sh = neighbour_graph(pos, R_MAX, atoms.cell.array, atoms.pbc)
        inputs = (torch.tensor(pos), torch.tensor(atoms.numbers), torch.tensor(ei), torch.tensor(sh))
        out = model(*inputs, len(atoms), True)
        ref = potential(*inputs, torch.zeros(len(atoms), dtype=torch.long), 1, compute_virial=True)
        assert abs(float(out["energy"].detach()) - float(ref["energy"][0].detach())) < 1e-8
        torch.testing.assert_close(out["forces"], ref["forces"], rtol=0, atol=1e-8)
        torch.testing.assert_close(out["virial"], ref["virial"][0], rtol=0, atol=1e-8)
        self._check_halo(model, out)

    @staticmethod
    def _check_halo(model, full):
        """The layer-wise protocol of LAMMPS' halo mode (``empp_ff.testing.halo``) on fake domains
        equals the file's own forward on the whole structure."""
        from empp_ff.testing.halo import evaluate

        atoms = molecular_box(24, 11.0, seed=1)
        for grid in ((1, 1, 1), (2, 1, 1), (2, 2, 1)):
            res = evaluate(model, atoms, grid)
            assert abs(res["energy"] - float(full["energy"])) < 1e-8
            assert np.abs(res["forces"] - full["forces"].detach().numpy()).max() < 1e-8
            assert np.abs(res["virial"] - full["virial"].detach().numpy()).max() < 1e-8
