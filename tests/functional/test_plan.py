"""The pair plan's layouts and the target chunks, against their
definitions: each pair row is its (target, relation) pair, the maps on
rows are the per-pair products, and the hand-written backwards are
autograd's."""
import pytest
import torch

from torch_geometric_hgt.functional.plan import PairPlan, TargetChunks

H, D = 2, 3


def edges(N=10, E=30, R=4, seed=0, blocks=False):
    g = torch.Generator().manual_seed(seed)
    edge_type = torch.randint(0, R, (E, ), generator=g)
    src = torch.randint(0, N, (E, ), generator=g)
    dst = torch.randint(0, N, (E, ), generator=g)
    layout = None
    if blocks:  # two blocks; relation r points into block r % 2
        sizes, target = [N // 2, N - N // 2], [r % 2 for r in range(R)]
        lo = (edge_type % 2) * sizes[0]
        dst = lo + dst % torch.tensor(sizes)[edge_type % 2]
        layout = (sizes, target)
    return torch.stack([src, dst]), edge_type, layout


def build(layout, N=10, R=4):
    edge_index, edge_type, blocks = edges(N=N, R=R,
                                          blocks=layout == 'blocks')
    plan = PairPlan.build(layout, edge_index, edge_type, N, R, blocks)
    return plan, edge_index, edge_type


def pair_of_rows(plan, N, R):
    """``(node, relation)`` of every pair row."""
    node = torch.full((plan.num_pairs, ), -1)
    rel = torch.full((plan.num_pairs, ), -1)
    if plan.groups is None:
        node, rel = torch.arange(N * R) // R, torch.arange(N * R) % R
        return node, rel
    for g in plan.groups:
        nodes = torch.arange(*g.bounds) if g.bounds is not None else g.nodes
        node[g.start:g.end], rel[g.start:g.end] = nodes, g.relation
    return node, rel


@pytest.mark.parametrize('layout', ['dense', 'compact', 'blocks'])
def test_rows_are_the_edges_pairs_and_edges_are_sorted(layout):
    N, R = 10, 4
    plan, edge_index, edge_type = build(layout, N, R)
    node, rel = pair_of_rows(plan, N, R)
    assert torch.equal(plan.src, edge_index[0][plan.perm])
    assert torch.equal(plan.dst, edge_index[1][plan.perm])
    assert torch.equal(node[plan.pair], plan.dst)
    assert torch.equal(rel[plan.pair], edge_type[plan.perm])
    assert bool((plan.pair[1:] >= plan.pair[:-1]).all())
    assert sorted(plan.perm.tolist()) == list(range(edge_type.numel()))


@pytest.mark.parametrize('layout', ['dense', 'compact', 'blocks'])
def test_maps_and_their_backwards(layout):
    N, R = 10, 4
    plan, _, _ = build(layout, N, R)
    node, rel = pair_of_rows(plan, N, R)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(H, N, D, dtype=torch.float64, generator=g,
                    requires_grad=True)
    w = torch.randn(R, H, D, D, dtype=torch.float64, generator=g,
                    requires_grad=True)
    u = torch.randn(H, plan.num_pairs, D, dtype=torch.float64, generator=g,
                    requires_grad=True)
    # definitions: row p is q[node_p] @ w[rel_p]; agg[t] sums u[p] @
    # w[rel_p] over the rows of t
    qr = plan.fold_queries(q, w)
    want_qr = torch.einsum('hpd,phde->hpe', q[:, node], w[rel])
    torch.testing.assert_close(qr, want_qr)
    agg = plan.sum_messages(u, w)
    want_agg = torch.zeros(H, N, D, dtype=torch.float64).index_add_(
        1, node, torch.einsum('hpd,phde->hpe', u, w[rel]))
    torch.testing.assert_close(agg, want_agg)

    d_qr = torch.randn(qr.shape, dtype=torch.float64, generator=g)
    d_q = torch.empty_like(q)
    d_w = plan.fold_queries_backward(d_qr, q.detach(), w.detach(), d_q)
    torch.testing.assert_close(
        (d_q, d_w), torch.autograd.grad(want_qr, (q, w), d_qr))
    d_agg = torch.randn(agg.shape, dtype=torch.float64, generator=g)
    du = torch.empty_like(u)
    d_w = plan.sum_messages_backward(d_agg, u.detach(), w.detach(), du)
    torch.testing.assert_close(
        (du, d_w), torch.autograd.grad(want_agg, (u, w), d_agg))


@pytest.mark.parametrize('chunk', [1, 4, 7, 1000])
def test_target_chunks_hold_whole_targets(chunk):
    N, R = 12, 3
    edge_index, edge_type, _ = edges(N=N, E=40, R=R, seed=2)
    key, perm = torch.sort(edge_index[1] * R + edge_type)
    chunks = TargetChunks(key, edge_index[0][perm], N, R, chunk)
    assert chunks.bounds[0][:3:2] == (0, 0)
    assert chunks.bounds[-1][1::2] == (N, key.numel())
    dst = key // R
    for (n0, n1, e0, e1), nxt in zip(chunks.bounds, chunks.bounds[1:] +
                                     [None]):
        # at most `chunk` targets, and fewer than `chunk` edges beyond
        # those of the first target (a target's edges are never split)
        first = int((dst[e0:e1] == n0).sum())
        assert n1 - n0 <= chunk and e1 - e0 - first < chunk
        assert bool(((dst[e0:e1] >= n0) & (dst[e0:e1] < n1)).all())
        if nxt is not None:
            assert (n1, e1) == (nxt[0], nxt[2])
        src, local_dst, pair = chunks.edges(n0, e0, e1)
        assert torch.equal(local_dst, dst[e0:e1] - n0)
        assert torch.equal(pair, key[e0:e1] - n0 * R)
