"""DenseHGTConv / DenseHGT against the per-pair spec and the sparse layers."""
import pytest
import torch
import torch.nn.functional as F
from conftest import AUTOCAST, DEVICES, assert_autocast_close, randomize_
from reference import spec_dense

from torch_geometric_hgt import (DenseHGT, DenseHGTConv, LoopDenseHGTConv,
                                 SoftGraph, VectorizedHGTConv, dense_to_batch)
from torch_geometric_hgt.conv import CONVS

T, R = 3, 2


def soft_graph(kind='random', B=3, N=5, in_dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, in_dim, generator=g)
    P = torch.softmax(torch.randn(B, N, T, generator=g) * 2, -1)
    adj = torch.rand(B, N, N, generator=g) * \
        (torch.rand(B, N, N, generator=g) > 0.3)
    E = torch.softmax(torch.randn(B, N, N, R, generator=g) * 2, -1)
    mask = None
    if kind == 'masked':
        mask = torch.rand(B, N, generator=g) > 0.3
        mask[:, 0] = True
    if kind == 'no_in_edges':
        adj[:, :, :2] = 0  # nodes 0 and 1 receive nothing
    if kind == 'zero_adj':
        adj.zero_()
    if kind == 'one_node':
        x, P, adj, E = x[:, :1], P[:, :1], adj[:, :1, :1], E[:, :1, :1]
    if kind == 'hard':
        P = F.one_hot(P.argmax(-1), T).float()
        E = F.one_hot(E.argmax(-1), R).float()
        adj = (adj > 0.5).float()
        mask = torch.rand(B, N, generator=g) > 0.2
    return x, P, adj, E, mask


KINDS = ['random', 'masked', 'no_in_edges', 'zero_adj', 'one_node', 'hard']


def run_with_grads(fn, module, inputs, weight):
    for t in list(module.parameters()) + inputs:
        t.grad = None
    out = fn(*inputs)
    (out * weight).sum().backward()
    return out, [t.grad.clone() if t.grad is not None else torch.zeros_like(t)
                 for t in list(module.parameters()) + inputs]


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('use_norm,out_dim,heads,N', [
    (True, 8, 2, 5), (False, 8, 2, 5), (False, 12, 3, 5),
    (True, 16, 2, 8)])  # the last runs the C attention kernels on CPU
def test_matches_per_pair_spec(kind, use_norm, out_dim, heads, N):
    layer = randomize_(DenseHGTConv(8, out_dim, T, R, heads,
                                    use_norm=use_norm)).eval()
    x, P, adj, E, mask = soft_graph(kind, N=N)
    inputs = [t.clone().requires_grad_() for t in (x, P, adj, E)]
    weight = torch.randn(*x.shape[:2], out_dim)
    out, got = run_with_grads(lambda *a: layer(*a, node_mask=mask), layer,
                              inputs, weight)
    ref, want = run_with_grads(lambda *a: spec_dense(layer, *a, mask), layer,
                               inputs, weight)
    assert torch.allclose(out, ref, atol=1e-4, rtol=0)
    for g, w in zip(got, want):
        # d out / d adj at adj = 0 grows like exp(score gap): relative scale
        assert torch.allclose(g, w, atol=1e-4 * max(1., float(w.abs().max())),
                              rtol=0)
    if mask is not None:
        assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))


@pytest.mark.parametrize('kind', ['random', 'masked', 'zero_adj'])
@pytest.mark.parametrize('out_dim,N', [(8, 5), (16, 8)])  # 2nd: C kernels
def test_loop_reference_matches(kind, out_dim, N):
    loop = randomize_(LoopDenseHGTConv(8, out_dim, T, R, 2)).eval()
    fast = DenseHGTConv(8, out_dim, T, R, 2).eval()
    fast.load_state_dict(loop.state_dict(), strict=True)
    x, P, adj, E, mask = soft_graph(kind, N=N)
    assert torch.allclose(loop(x, P, adj, E, mask),
                          fast(x, P, adj, E, mask), atol=1e-4)


@pytest.mark.parametrize('name', sorted(CONVS))
@pytest.mark.parametrize('use_norm', [True, False])
def test_hard_dense_equals_sparse_on_converted_batch(name, use_norm):
    dense = randomize_(DenseHGTConv(8, 8, T, R, 2, use_norm=use_norm)).eval()
    sparse = CONVS[name](8, 8, T, R, 2, use_norm=use_norm).eval()
    sparse.load_state_dict(dense.state_dict(), strict=True)
    x, P, adj, E, mask = soft_graph('hard', B=4, N=6, seed=3)
    graph = SoftGraph(P, adj, E, mask, x)
    batch = dense_to_batch(graph)
    want = sparse(batch.x, batch.node_type, batch.edge_index,
                  batch.edge_type)
    got = dense(x, P, adj, E, mask)
    assert batch.num_edges > 0
    assert torch.allclose(got[mask], want, atol=1e-4)


def test_chunked_equals_unchunked_with_grads():
    layer = randomize_(DenseHGTConv(8, 8, T, R, 2, chunk_size=None)).eval()
    x, P, adj, E, mask = soft_graph('masked', B=7)
    x.requires_grad_()
    w = torch.randn(7, 5, 8)
    (layer(x, P, adj, E, mask) * w).sum().backward()
    want, want_grad = layer(x, P, adj, E, mask), x.grad.clone()
    for size in (1, 3):
        x.grad = None
        layer.chunk_size = size
        out = layer(x, P, adj, E, mask)
        (out * w).sum().backward()
        assert torch.allclose(out, want, atol=1e-6)
        assert torch.allclose(x.grad, want_grad, atol=1e-6)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('checkpoint', [False, True])
@pytest.mark.parametrize('N', [5, 8])  # torch attention, C kernels
def test_padded_nodes_features_cannot_poison_gradients(N, checkpoint,
                                                       device):
    # a padded node's features are not part of the graph; huge ones gave
    # its pairs' adj gradients inf, times the mask's 0: NaN
    g = torch.Generator().manual_seed(0)
    B, F = 3, 16
    x = torch.randn(B, N, F, generator=g)
    x[:, -1] *= 3e4
    P = torch.softmax(torch.randn(B, N, T, generator=g), -1)
    adj = torch.rand(B, N, N, generator=g)
    E = torch.softmax(torch.randn(B, N, N, R, generator=g), -1)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[:, -1] = False
    torch.manual_seed(0)
    layer = DenseHGTConv(F, F, T, R, 2, checkpoint=checkpoint).eval()
    inputs = [t.to(device).requires_grad_() for t in (x, P, adj, E)]
    out = layer.to(device)(*inputs, mask.to(device))
    (out * torch.randn(out.shape, generator=g).to(device)).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in inputs)
    dadj = inputs[2].grad
    assert (dadj[:, -1] == 0).all() and (dadj[:, :, -1] == 0).all()


@pytest.mark.parametrize('with_x', [True, False])
def test_dense_model_stack(with_x):
    model = randomize_(DenseHGT(8, 12, 6, T, R, n_heads=2, n_layers=3,
                                chunk_size=2)).eval()
    x, P, adj, E, mask = soft_graph('masked')
    graph = {'node_types': P, 'adj_matrix': adj, 'edge_types': E,
             'node_mask': mask}
    if with_x:
        graph['x'] = x
    h = x if with_x else model.input_projection(P)
    for layer in model.layers:
        h = spec_dense(layer, h, P, adj, E, mask)
    assert [(c.in_dim, c.out_dim) for c in model.layers] == \
        [(8, 12), (12, 12), (12, 6)]
    assert torch.allclose(model(graph), h, atol=1e-4)
    assert torch.allclose(model(SoftGraph.from_any(graph)), h, atol=1e-4)


@pytest.mark.parametrize('case,match', [
    ('x_dim', "'x'.*in_dim"),
    ('types_dim', "'node_types'.*num_node_types"),
    ('rel_dim', "'edge_types'.*num_relations"),
    ('adj_shape', "'adj' must have shape"),
    ('nan', "'x' contains NaN"),
    ('neg_adj', "'adj' must hold probabilities"),
    ('rows', "'node_types' rows"),
    ('mask_dtype', "'node_mask' must be torch.bool"),
    ('x_dtype', "'x' is torch.float64 but the layer's parameters"),
])
def test_invalid_inputs(case, match):
    layer = DenseHGTConv(8, 8, T, R, 2)
    x, P, adj, E, _ = soft_graph()
    mask = None
    if case == 'x_dim':
        x = x[..., :4]
    if case == 'types_dim':
        P = torch.softmax(torch.randn(3, 5, T + 1), -1)
    if case == 'rel_dim':
        E = torch.softmax(torch.randn(3, 5, 5, R + 1), -1)
    if case == 'adj_shape':
        adj = adj[:, :4]
    if case == 'nan':
        x[1, 1, 1] = float('nan')
    if case == 'neg_adj':
        adj[0, 0, 1] = -0.1
    if case == 'rows':
        P = P * 0.5
    if case == 'mask_dtype':
        mask = torch.ones(3, 5)
    if case == 'x_dtype':
        x = x.double()
    with pytest.raises((ValueError, TypeError), match=match):
        layer(x, P, adj, E, mask)


@pytest.mark.parametrize('case,match', [
    ('types_dim', "'node_types'.*num_node_types"),
    ('rel_dim', "'edge_types'.*num_relations"),
    ('x_dim', "'x'.*in_dim"),
    ('x_dtype', "'x' is torch.float64 but the layer's parameters"),
])
def test_dense_model_checks_inputs_its_layers_do_not(case, match):
    # the layers of DenseHGT skip validation (the graph is checked once)
    model = DenseHGT(8, 8, 8, T, R, n_heads=2)
    x, P, adj, E, _ = soft_graph()
    graph = {'node_types': P, 'adj_matrix': adj, 'edge_types': E, 'x': x}
    if case == 'types_dim':
        graph['node_types'] = torch.softmax(torch.randn(3, 5, T + 1), -1)
        del graph['x']
    if case == 'rel_dim':
        graph['edge_types'] = torch.softmax(torch.randn(3, 5, 5, R + 1), -1)
    if case == 'x_dim':
        graph['x'] = x[..., :4]
    if case == 'x_dtype':
        graph['x'] = x.double()
    with pytest.raises((ValueError, TypeError), match=match):
        model(graph)


def test_weights_move_between_dense_and_sparse():
    """Checkpoints move both ways with every value intact, and the moved
    weights compute the same layer on a hard graph."""
    sparse = randomize_(VectorizedHGTConv(8, 8, T, R, 2)).eval()
    dense = DenseHGTConv(8, 8, T, R, 2).eval()
    dense.load_state_dict(sparse.state_dict(), strict=True)
    for key, value in sparse.state_dict().items():
        assert torch.equal(dense.state_dict()[key], value), key
    back = VectorizedHGTConv(8, 8, T, R, 2).eval()
    back.load_state_dict(dense.state_dict(), strict=True)
    for key, value in sparse.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    x, P, adj, E, mask = soft_graph('hard', B=3, N=5, seed=4)
    batch = dense_to_batch(SoftGraph(P, adj, E, mask, x))
    got = dense(x, P, adj, E, mask)[mask]
    want = back(batch.x, batch.node_type, batch.edge_index, batch.edge_type)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('device,dtype', AUTOCAST)
def test_autocast_finite_and_close(device, dtype):
    layer = DenseHGTConv(16, 16, T, R, 2).eval()
    assert_autocast_close(layer, soft_graph('masked', in_dim=16), device,
                          dtype)


@pytest.mark.parametrize('per_type', [True, False])
def test_update_dropout_masks(per_type):
    # without skip gate and norm, out = sum_t P_t drop(y_t): an entry is
    # exactly 0 only where every type's mask drops it; shared masks drop
    # a fraction p, independent ones p^T
    layer = DenseHGTConv(16, 32, 6, R, 2, dropout=0.5, use_norm=False)
    agg, x = torch.randn(4000, 32), torch.randn(4000, 16)
    P = torch.full((4000, 6), 1 / 6)
    zeros = (layer.update_soft(agg, x, P, per_type) == 0).float().mean()
    want = 0.5 ** 6 if per_type else 0.5
    assert abs(float(zeros) - want) < 0.02
