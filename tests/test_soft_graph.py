"""SoftGraph validation and the GraphVAE logits convention."""
import pytest
import torch
import torch.nn.functional as F

from torch_geometric_hgt import (SoftGraph, gumbel_softmax_sample,
                                 soft_graph_from_logits)


def logits(B=3, N=6, R=4, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, N, N, generator=g) * 2,
            torch.randn(B, N, N, R, generator=g),
            torch.randn(B, N, T, generator=g))


def test_existence_enters_adjacency_on_both_ends():
    a, e, n = logits()
    g = soft_graph_from_logits(a, e, n, gumbel=False)
    exist = torch.sigmoid(torch.diagonal(a, dim1=1, dim2=2))
    want = torch.sigmoid(a) * exist.unsqueeze(2) * exist.unsqueeze(1)
    want = want * (1 - torch.eye(6))
    assert torch.allclose(g.adj, want)
    assert torch.equal(torch.diagonal(g.adj, dim1=1, dim2=2),
                       torch.zeros(3, 6))
    assert torch.allclose(g.node_exist, exist)
    assert torch.allclose(g.node_types, torch.softmax(n, -1))
    assert g.node_mask is None and g.num_graphs == 3


def test_dict_input_and_temperature():
    a, e, n = logits()
    g = soft_graph_from_logits({'adj_logits': a, 'edge_logits': e,
                                'node_logits': n}, temperature=0.5,
                               gumbel=False)
    assert torch.allclose(g.edge_types, torch.softmax(e / 0.5, -1))


def test_gumbel_reproducible_with_generator():
    a, e, n = logits()
    run = [soft_graph_from_logits(a, e, n, generator=torch.Generator()
                                  .manual_seed(s)).node_types
           for s in (1, 1, 2)]
    assert torch.equal(run[0], run[1]) and not torch.equal(run[0], run[2])


def test_hard_is_one_hot_forward_soft_backward():
    a, e, n = [t.requires_grad_() for t in logits()]
    kw = dict(generator=None, gumbel=False)
    hard = soft_graph_from_logits(a, e, n, hard=True, **kw)
    soft = soft_graph_from_logits(a, e, n, hard=False, **kw)
    assert torch.equal(hard.node_types,
                       F.one_hot(soft.node_types.argmax(-1), 5).float())
    assert torch.equal(hard.node_mask, soft.node_exist > 0.5)
    assert set(hard.adj.unique().tolist()) <= {0.0, 1.0}
    w = torch.randn(3, 6, 6)
    g_hard = torch.autograd.grad((hard.adj * w).sum(), a)[0]
    g_soft = torch.autograd.grad((soft.adj * w).sum(), a)[0]
    assert torch.allclose(g_hard, g_soft)


def test_hard_method_and_to():
    g = soft_graph_from_logits(*logits(), gumbel=False)
    h = g.hard()
    assert torch.equal(h.node_types.argmax(-1), g.node_types.argmax(-1))
    assert torch.equal(h.adj, (g.adj > 0.5).float())
    moved = g.to(torch.float64)
    assert moved.adj.dtype == torch.float64 and moved.node_mask is None


@pytest.mark.parametrize('case,match', [
    ('nan', "'adj' contains NaN"),
    ('range', "'adj' must hold probabilities"),
    ('rows', "'node_types' rows"),
    ('shape', "'edge_types' must have shape"),
    ('mask', "'node_mask' must have shape"),
])
def test_invalid_soft_graph(case, match):
    g = soft_graph_from_logits(*logits(), gumbel=False)
    P, A, E = g.node_types.clone(), g.adj.clone(), g.edge_types
    mask = None
    if case == 'nan':
        A[0, 1, 2] = float('nan')
    if case == 'range':
        A[0, 1, 2] = 1.5
    if case == 'rows':
        P[0, 0] = 0.9 * P[0, 0]
    if case == 'shape':
        E = E[:, :, :5]
    if case == 'mask':
        mask = torch.ones(3, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=match):
        SoftGraph(P, A, E, mask)


def test_masked_rows_need_not_be_distributions():
    g = soft_graph_from_logits(*logits(), gumbel=False)
    P = g.node_types.clone()
    P[:, -1] = 0  # padding row
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[:, -1] = False
    SoftGraph(P, g.adj, g.edge_types, mask)
    with pytest.raises(ValueError):
        SoftGraph(P, g.adj, g.edge_types)


def test_bad_logits():
    a, e, n = logits()
    with pytest.raises(ValueError, match='logit shapes disagree'):
        soft_graph_from_logits(a, e[:, :3], n)
    with pytest.raises(ValueError, match="'temperature' must be positive"):
        soft_graph_from_logits(a, e, n, temperature=0)
    with pytest.raises(ValueError, match='either as one dict'):
        soft_graph_from_logits({'adj_logits': a, 'edge_logits': e,
                                'node_logits': n}, e)
    with pytest.raises(ValueError, match="'logits' contains NaN"):
        gumbel_softmax_sample(torch.full((2, 3), float('nan')))


def test_old_gumbel_softmax_name_warns_and_agrees():
    from torch_geometric_hgt import gumbel_softmax
    x = torch.randn(4, 5)
    with pytest.warns(FutureWarning, match='gumbel_softmax_sample'):
        old = gumbel_softmax(x, 0.5,
                             generator=torch.Generator().manual_seed(0))
    new = gumbel_softmax_sample(x, 0.5,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(old, new)
