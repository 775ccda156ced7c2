"""EMPP masked copies: distinct masks, graph filtering, renumbering, neighbour sets."""

import torch

from empp_ff.empp.masking import build_masked_batch, sample_mask_indices
from empp_ff.testing.batches import collate, molecule_graph, random_molecule


def _batch(sizes, r_max=2.5, box=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        p, z = random_molecule(n, [1, 6, 8], g, box=box)
        forces = torch.randn(n, 3, generator=g, dtype=torch.float64)
        graphs.append(molecule_graph(p, z, r_max, energy=-10.0, forces=forces))
    return collate(graphs)


def _build(b, idx):
    return build_masked_batch(b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, b.num_graphs, idx)


def test_masks_are_distinct_atoms_of_their_molecule_and_small_molecules_are_skipped():
    b = _batch([5, 3, 7, 1, 2])
    idx = sample_mask_indices(b.batch, b.num_graphs, 3, torch.Generator().manual_seed(1))
    assert idx.shape == (3, 5)
    sizes = [5, 3, 7, 1, 2]
    for m, n in enumerate(sizes):
        col = idx[:, m]
        valid = col[col >= 0]
        # a copy exists iff the molecule keeps an atom: N >= 2 and j < N
        assert valid.numel() == (0 if n < 2 else min(3, n))
        assert (col[: valid.numel()] >= 0).all()
        assert len(set(valid.tolist())) == valid.numel()
        assert (b.batch[valid] == m).all()


def test_masks_are_reproducible_and_uniform_over_atoms():
    b = _batch([4] * 600, r_max=10.0)
    i1 = sample_mask_indices(b.batch, b.num_graphs, 2, torch.Generator().manual_seed(7))
    i2 = sample_mask_indices(b.batch, b.num_graphs, 2, torch.Generator().manual_seed(7))
    i3 = sample_mask_indices(b.batch, b.num_graphs, 2, torch.Generator().manual_seed(8))
    assert torch.equal(i1, i2) and not torch.equal(i1, i3)
    local = i1 - b.ptr[:-1][None, :]
    counts = torch.bincount(local[0], minlength=4).double()
    # each of the 4 atoms masked with p = 1/4: 150 ± 10.6 (1 sd); allow 4.5 sd
    assert ((counts - 150).abs() < 48).all(), counts
    assert (local[0] != local[1]).all()


def test_masked_graph_drops_node_and_its_edges_and_renumbers():
    b = _batch([6, 5, 8], r_max=2.5, box=4.0, seed=3)
    idx = sample_mask_indices(b.batch, b.num_graphs, 2, torch.Generator().manual_seed(2))
    mb = _build(b, idx)
    n, B = 2, b.num_graphs
    snd, rcv = b.edge_index
    assert mb.num_graphs == n * B
    assert mb.positions.shape[0] == n * (b.num_nodes - B)
    original = {(int(s), int(r)) for s, r in zip(snd, rcv)}
    for j in range(n):
        nodes = (mb.batch // B) == j
        src = mb.node_source[nodes]
        masked = idx[j]
        assert not bool(torch.isin(src, masked).any())
        assert sorted(src.tolist()) == sorted(set(range(b.num_nodes)) - set(masked.tolist()))
        # node data follow their source atom
        assert torch.equal(mb.positions[nodes], b.positions[src])
        assert torch.equal(mb.atomic_numbers[nodes], b.atomic_numbers[src])
        assert torch.equal(mb.batch[nodes], j * B + b.batch[src])
        # edges: E − 2·deg(masked atom) per copy, and exactly the original edges without it
        emask = (mb.batch[mb.edge_index[0]] // B) == j
        deg = sum(int((rcv == m).sum()) for m in masked)
        assert int(emask.sum()) == b.edge_index.shape[1] - 2 * deg
        kept = {(int(mb.node_source[s]), int(mb.node_source[r])) for s, r in mb.edge_index[:, emask].t()}
        assert kept == {e for e in original if e[0] not in masked.tolist() and e[1] not in masked.tolist()}
        assert (mb.batch[mb.edge_index[0]] == mb.batch[mb.edge_index[1]]).all()
        # neighbours of each masked atom = its original neighbours (senders of edges into it)
        for m_graph in range(B):
            m = int(masked[m_graph])
            pairs = mb.g_idx == j * B + m_graph
            got = sorted(mb.node_source[mb.k_idx[pairs]].tolist())
            assert got == sorted(snd[rcv == m].tolist())
            assert (mb.batch[mb.k_idx[pairs]] == j * B + m_graph).all()
            expected_r = b.positions[m] - b.positions[mb.node_source[mb.k_idx[pairs]]]
            assert torch.allclose(mb.displacement[pairs], expected_r)
        assert torch.equal(mb.masked_element[j * B : (j + 1) * B], b.atomic_numbers[masked])
    assert not mb.displacement.requires_grad


def test_periodic_edges_give_shifted_displacements_and_self_images_are_not_neighbours():
    # two atoms; edges with periodic shifts, including atom 0 seeing its own image
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    edge_index = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0]])
    shifts = torch.tensor([[0.0, 0, 0], [0, 0, 0], [-3.0, 0, 0], [0, 3.0, 0]], dtype=torch.float64)
    batch = torch.zeros(2, dtype=torch.long)
    mb = build_masked_batch(pos, torch.tensor([6, 1]), edge_index, shifts, batch, 1, torch.tensor([[0]]))
    assert mb.edge_index.shape[1] == 0 and mb.positions.shape[0] == 1
    # pairs: the two edges 1 -> 0 (plain and through the image); not the self-image 0 -> 0
    assert mb.k_idx.tolist() == [0, 0]
    expected = torch.tensor([[-1.0, 0, 0], [-4.0, 0, 0]], dtype=torch.float64)
    assert torch.allclose(mb.displacement, expected)


def test_mask_indices_must_belong_to_their_molecule():
    b = _batch([3, 3])
    bad = torch.tensor([[3, 0]])  # atom 3 belongs to molecule 1, not 0
    try:
        _build(b, bad)
    except ValueError as err:
        assert "molecule" in str(err)
    else:
        raise AssertionError("expected ValueError")
