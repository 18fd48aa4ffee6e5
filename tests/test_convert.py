"""Converters between soft graphs and PyG batches."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from torch_geometric_hgt import (SoftGraph, batch_to_dense, dense_to_batch,
                                 dense_to_hetero)

T, R = 4, 3


def hard_graph(B=4, N=6, seed=0, prefix_mask=True, empty=None):
    """``empty``: the index of a family without any node."""
    g = torch.Generator().manual_seed(seed)
    P = F.one_hot(torch.randint(0, T, (B, N), generator=g), T).float()
    E = F.one_hot(torch.randint(0, R, (B, N, N), generator=g), R).float()
    adj = (torch.rand(B, N, N, generator=g) > 0.6).float()
    sizes = torch.randint(1, N + 1, (B, ), generator=g)
    if empty is not None:
        sizes[empty] = 0
    mask = torch.arange(N) < sizes.unsqueeze(1)
    if not prefix_mask:
        mask = torch.rand(B, N, generator=g) > 0.3
    adj = adj * mask.unsqueeze(1) * mask.unsqueeze(2)
    P = P * mask.unsqueeze(-1)  # padding rows are all-zero
    x = torch.randn(B, N, 5, generator=g) * mask.unsqueeze(-1)
    return SoftGraph(P, adj, E, mask, x)


def test_batch_matches_per_family_construction():
    graph = hard_graph(prefix_mask=False)
    batch = dense_to_batch(graph)
    assert isinstance(batch, Batch) and batch.num_graphs == 4
    for b, data in enumerate(batch.to_data_list()):
        m = graph.node_mask[b]
        assert torch.equal(data.x, graph.x[b][m])
        assert torch.equal(data.node_type, graph.node_types[b][m].argmax(-1))
        sub = graph.adj[b][m][:, m]
        src, dst = sub.nonzero(as_tuple=True)
        assert torch.equal(data.edge_index, torch.stack([src, dst]))
        rel = graph.edge_types[b][m][:, m].argmax(-1)
        assert torch.equal(data.edge_type, rel[src, dst])
        assert torch.equal(data.edge_weight, sub[src, dst])


def test_type_zero_nodes_are_kept():
    # the users' converter dropped type-0 nodes as padding
    graph = hard_graph()
    graph.node_types[:, 0] = F.one_hot(torch.tensor(0), T).float()
    batch = dense_to_batch(graph)
    assert int((batch.node_type == 0).sum()) >= 4
    assert batch.num_nodes == int(graph.node_mask.sum())


@pytest.mark.parametrize('empty', [None, 0, 3])
def test_round_trip_is_exact_for_hard_graphs(empty):
    # a family without nodes (a trailing one used to be dropped)
    graph = hard_graph(empty=empty)
    back = batch_to_dense(dense_to_batch(graph), T, R, max_num_nodes=6)
    assert torch.equal(back.node_mask, graph.node_mask)
    assert torch.equal(back.adj, graph.adj)
    assert torch.equal(back.node_types, graph.node_types)
    assert torch.equal(back.x, graph.x)
    edges = graph.adj > 0
    assert torch.equal(back.edge_types[edges], graph.edge_types[edges])


def test_sampling_is_reproducible_and_follows_probabilities():
    B, N = 200, 4
    P = torch.tensor([0.7, 0.1, 0.1, 0.1]).expand(B, N, T)
    adj = torch.full((B, N, N), 0.25)
    E = torch.full((B, N, N, R), 1 / R)
    graph = SoftGraph(P, adj, E)
    a = dense_to_batch(graph, sample=True,
                       generator=torch.Generator().manual_seed(0))
    b = dense_to_batch(graph, sample=True,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.edge_index, b.edge_index)
    assert abs(a.num_edges / (B * N * N) - 0.25) < 0.03
    assert abs(float((a.node_type == 0).float().mean()) - 0.7) < 0.05


def test_family_nodes():
    graph = hard_graph()
    feats = torch.randn(4, 5)
    batch = dense_to_batch(graph, family_features=feats)
    for b, data in enumerate(batch.to_data_list()):
        members = int(graph.node_mask[b].sum())
        assert data.num_nodes == members + 1
        assert int(data.node_type[-1]) == T
        assert torch.equal(data.x[-1], feats[b])
        fam = data.edge_type == R
        assert int(fam.sum()) == members
        assert torch.equal(data.edge_index[0, fam],
                           torch.full((members, ), members))
        assert torch.equal(data.edge_index[1, fam], torch.arange(members))
    with pytest.raises(ValueError, match="'family_features'"):
        dense_to_batch(graph, family_features=torch.randn(4, 2))


def test_hetero_batch_has_named_types_and_same_edges():
    """Every node type's rows and every (source type, relation,
    destination type) edge set, with local indices, derived from the flat
    batch."""
    graph = hard_graph()
    names, rels = ['a', 'b', 'c', 'd'], ['x', 'y', 'z']
    data = dense_to_hetero(graph, names, rels)
    flat = dense_to_batch(graph)
    nt = flat.node_type
    local = torch.empty_like(nt)
    for i, n in enumerate(names):
        rows = (nt == i).nonzero().view(-1)
        local[rows] = torch.arange(rows.numel())
        assert data[n].num_nodes == rows.numel()
        assert torch.equal(data[n].x, flat.x[rows])
        assert torch.equal(data[n].batch, flat.batch[rows])
    src, dst = flat.edge_index
    want = {}
    for e in range(flat.num_edges):
        et = (names[nt[src[e]]], rels[flat.edge_type[e]], names[nt[dst[e]]])
        want.setdefault(et, []).append(
            (int(local[src[e]]), int(local[dst[e]]),
             float(flat.edge_weight[e])))
    assert sorted(data.edge_types) == sorted(want) and len(want) > 3
    for et, edges in want.items():
        got = torch.cat([data[et].edge_index.double(),
                         data[et].edge_weight.double().view(1, -1)]).t()
        assert got.tolist() == [list(e) for e in edges]
    with pytest.raises(ValueError, match='node type names'):
        dense_to_hetero(graph, names[:2], rels)


@pytest.mark.parametrize('threshold', [-0.1, 1.5, float('nan'), '0.5', True])
def test_bad_threshold(threshold):
    graph = hard_graph()
    for convert in (lambda: dense_to_batch(graph, threshold),
                    lambda: graph.hard(threshold)):
        with pytest.raises(ValueError, match="'threshold' must be a number"):
            convert()


@pytest.mark.parametrize('case,match', [
    ('max_num_nodes', "'max_num_nodes' \\(2\\) is smaller"),
    ('cross_graph', "'batch.edge_index' joins nodes of different graphs"),
    ('out_of_range', "'batch.edge_index' must hold node indices"),
])
def test_batch_to_dense_refuses_what_it_cannot_hold(case, match):
    batch = dense_to_batch(hard_graph(prefix_mask=False))
    size = 6
    if case == 'max_num_nodes':
        size = 2
    src = int(batch.ptr[1]) - 1  # the first graph's last node
    if case == 'cross_graph':
        batch.edge_index = torch.cat(
            [batch.edge_index, torch.tensor([[src], [src + 1]])], 1)
    if case == 'out_of_range':
        batch.edge_index = torch.cat(
            [batch.edge_index, torch.tensor([[src], [batch.num_nodes]])], 1)
    with pytest.raises(ValueError, match=match):
        batch_to_dense(batch, T, R, max_num_nodes=size)


@pytest.mark.parametrize('names,rels,match', [
    (['a', 'b', 'c'], ['x', 'y', 'z'], 'need 4 node type names'),
    (['a', 'b', 'a', 'd'], ['x', 'y', 'z'], "'node_type_names' must be "
     "distinct"),
    (['a', 'b', 'c', 'd'], ['x', 'x', 'z'], "'relation_names' must be "
     "distinct"),
])
def test_hetero_names_must_fit(names, rels, match):
    # repeated names would merge two types into one silently
    with pytest.raises(ValueError, match=match):
        dense_to_hetero(hard_graph(), names, rels)
