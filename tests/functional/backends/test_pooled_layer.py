"""The ``'ultrafast'`` whole-layer Function (what UltraFastHGTConv runs on
CPU) against the same backend's autograd form (projections,
``hgt_attention``, update): outputs, attention, every gradient and the
dropout masks, on the awkward graphs; and its buffer reuse across calls."""
import pytest
import torch
from conftest import GRAPH_KINDS, R, T, make_graph, randomize_

from torch_geometric_hgt import UltraFastHGTConv
from torch_geometric_hgt.buffers import BufferPool
from torch_geometric_hgt.functional.backends.pooled_layer import \
    pooled_forward
from torch_geometric_hgt.functional.dispatch import layer_route

TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def layer(in_dim, use_norm=True, dropout=0.0, dtype=torch.float32):
    m = UltraFastHGTConv(in_dim, 8, T, R, 2, dropout=dropout,
                         use_norm=use_norm)
    randomize_(m)
    m.pool = BufferPool(min_bytes=0)  # keep even the tiny test buffers
    return m.to(dtype)


def run(m, pool, x, args, seed=3):
    """Output, attention and the gradients of x and every parameter."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # the dropout mask
    if pool is None:
        out, att = m.edge_route('ultrafast', x, *args, None, None)
    else:
        out, att = pooled_forward(m, x, *args, 16, pool)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    wrt = [x] + list(m.parameters())
    grads = torch.autograd.grad((out * w).sum(), wrt, allow_unused=True)
    return [out, att] + [torch.zeros_like(t) if g is None else g
                         for t, g in zip(wrt, grads)]


def assert_close(a, b, tol):
    for i, (s, t) in enumerate(zip(a, b)):
        assert torch.allclose(s, t, atol=tol, rtol=tol), (i, (s - t).abs()
                                                          .max())


@pytest.mark.parametrize('kind', GRAPH_KINDS)
@pytest.mark.parametrize('in_dim,use_norm', [(8, True), (8, False),
                                             (5, True)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('train', [False, True])
def test_matches_the_autograd_path(kind, in_dim, use_norm, dtype, train):
    x, node_type, edge_index, edge_type, _ = make_graph(kind, in_dim)
    m = layer(in_dim, use_norm, dropout=0.3, dtype=dtype).train(train)
    x = x.to(dtype)
    args = (node_type, edge_index, edge_type)
    assert layer_route('ultrafast', x, False, True, dtype) == 'pooled'
    assert_close(run(m, m.pool, x, args), run(m, None, x, args),
                 TOL[dtype])


def many_relations(seed: int = 0):
    """``N R > E``: the pairs are compacted. Relation 5 has no edge, the
    upper nodes have no in-edge, half the edges repeat, some are loops."""
    g = torch.Generator().manual_seed(seed)
    N, E, R = 15, 40, 12
    src = torch.randint(0, N, (E, ), generator=g)
    dst = torch.randint(0, N - 4, (E, ), generator=g)
    src[E // 2:], dst[E // 2:] = src[:E // 2], dst[:E // 2]
    dst[::7] = src[::7]
    edge_type = torch.randint(0, R - 1, (E, ), generator=g)
    edge_type[edge_type >= 5] += 1
    edge_type[E // 2:] = edge_type[:E // 2]
    return (torch.randn(N, 8, generator=g),
            torch.randint(0, 3, (N, ), generator=g),
            torch.stack([src, dst]), edge_type), R


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('use_norm', [True, False])
def test_compacted_pairs_match_the_autograd_path(dtype, train, use_norm):
    (x, node_type, edge_index, edge_type), R = many_relations()
    assert x.size(0) * R > edge_type.numel()
    m = UltraFastHGTConv(8, 8, 3, R, 2, dropout=0.3, use_norm=use_norm)
    randomize_(m)
    m.pool = BufferPool(min_bytes=0)
    m = m.to(dtype).train(train)
    args = (node_type, edge_index, edge_type)
    assert_close(run(m, m.pool, x.to(dtype), args),
                 run(m, None, x.to(dtype), args), TOL[dtype])


def test_gradcheck():
    x, node_type, edge_index, edge_type, _ = make_graph('repeated')
    m = layer(8, dtype=torch.float64)
    x = x.double().requires_grad_()

    def f(x, *params):
        return pooled_forward(m, x, node_type, edge_index, edge_type, 16,
                              m.pool)[0]
    assert torch.autograd.gradcheck(f, (x, ), eps=1e-6, atol=1e-5)


def test_live_graphs_keep_their_buffers():
    """Two forward passes, then the backward passes in reverse order (the
    second graph's twice, retained): the second call may not reuse what
    the first graph still holds."""
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    m = layer(8, dropout=0.3).train()
    args = (node_type, edge_index, edge_type)
    inputs = [x, torch.randn_like(x)]
    want = [run(m, None, xi, args, seed=i) for i, xi in enumerate(inputs)]
    xs = [xi.clone().requires_grad_() for xi in inputs]
    outs = []
    for i, xi in enumerate(xs):  # both graphs alive
        torch.manual_seed(i)
        outs.append(pooled_forward(m, xi, *args, 16, m.pool)[0])
    w = torch.linspace(-1, 1, x.size(0) * 8).view(-1, 8)
    (outs[1] * w).sum().backward(retain_graph=True)
    (outs[1] * w).sum().backward()
    (outs[0] * w).sum().backward()
    for i in range(2):
        assert torch.allclose(outs[i], want[i][0], atol=TOL[torch.float32])
    assert torch.allclose(xs[0].grad, want[0][2], atol=TOL[torch.float32])
    assert torch.allclose(xs[1].grad, 2 * want[1][2],
                          atol=2 * TOL[torch.float32])


def test_reuses_its_buffers_across_calls():
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    m = layer(8)
    args = (x.requires_grad_(), node_type, edge_index, edge_type)
    m(*args).sum().backward()
    kept = m.pool.nbytes
    assert kept > 0
    for _ in range(2):
        m(*args).sum().backward()
        with torch.no_grad():
            m(*args)
    assert m.pool.nbytes == kept


def test_training_after_inference_mode():
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    m = layer(8)
    args = (node_type, edge_index, edge_type)
    with torch.inference_mode():
        m(x, *args)
    x = x.clone().requires_grad_()
    m(x, *args).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_no_pool_runs_the_autograd_path(monkeypatch):
    """``layer.pool = None`` (the opt-out) survives ``.to()`` and runs the
    projections, ``hgt_attention`` and the update instead."""
    import torch_geometric_hgt.conv.base as base
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    m = layer(8)
    m.pool = None
    m = m.double()
    monkeypatch.setattr(base, 'pooled_forward', None)  # a call would fail
    out = m(x.double(), node_type, edge_index, edge_type)
    want, _ = m.edge_route('ultrafast', x.double(), node_type, edge_index,
                           edge_type, None, None)
    assert torch.equal(out, want)
