"""The conformance matrix of the core: every backend of ``hgt_attention``
x pair layout x awkward graph x dtype x temporal encoding x explanation
mask x chunk size, against the definition (``reference.spec_attention``):
aggregate, attention weights and the gradients of every input."""
import pytest
import torch
from conftest import GRAPH_KINDS, R, make_graph
from reference import spec_attention

from torch_geometric_hgt.functional import attention, dispatch, hgt_attention

H, D = 2, 4  # heads, features per head
CPU = torch.device('cpu')
TIMES = 10  # rows of the temporal table

# (backend, blocks, chunk_size): 'blocks' hands PyG's node-block layout
# to the pair-folded backend, the other backends take and ignore it;
# chunks of 3 edges put chunk boundaries inside every graph (the
# vectorized backend has no chunks)
BACKENDS = [('vectorized', False, 'auto'),
            ('ultrafast', False, 'auto'), ('ultrafast', False, 3),
            ('ultrafast', True, 'auto'), ('ultrafast', True, 3),
            ('memory_efficient', False, 'auto'),
            ('memory_efficient', False, 3), ('memory_efficient', True, 3)]
KINDS = GRAPH_KINDS + ['many_relations']
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 0.1}


def graph(kind: str, blocks: bool):
    """``(N, edge_index, edge_type, num_relations, blocks)``. ``many
    relations``: ``N R > E``, so the pair-folded backend compacts its rows;
    ``blocks``: nodes as two blocks, each relation pointing into one (the
    edges' targets are moved into it)."""
    if kind == 'many_relations':
        g = torch.Generator().manual_seed(1)
        N, E, num_rel = 9, 30, 12
        edge_index = torch.randint(0, N, (2, E), generator=g)
        edge_type = torch.randint(0, num_rel - 1, (E, ), generator=g)
    else:
        x, _, edge_index, edge_type, _ = make_graph(kind)
        N, num_rel = x.size(0), R
    if not blocks:
        return N, edge_index, edge_type, num_rel, None
    sizes = [N // 2, N - N // 2]
    target = [r % 2 if sizes[r % 2] else 1 - r % 2 for r in range(num_rel)]
    lo = torch.tensor([0, sizes[0]])[torch.tensor(target)][edge_type]
    size = torch.tensor(sizes)[torch.tensor(target)][edge_type]
    edge_index = torch.stack([edge_index[0],
                              lo + edge_index[1] % size])
    return N, edge_index, edge_type, num_rel, (sizes, target)


def inputs(N: int, E: int, num_rel: int, dtype, rte: bool, mask: bool):
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) *
                0.5).to(dtype).requires_grad_()
    t = {name: rand(N, H, D) for name in 'qkv'}
    t['att'], t['msg'] = rand(num_rel, H, D, D), rand(num_rel, H, D, D)
    t['pri'] = rand(num_rel, H)
    if rte:
        t['table'] = rand(TIMES, 2 * H * D)
    if mask:
        t['mask'] = torch.rand(E, generator=g, dtype=torch.float64).to(
            dtype).requires_grad_()
    return t


def grads(out, w, t):
    """Gradients of ``(out * w).sum()`` with respect to every input (zero
    where none flows, e.g. without edges)."""
    if not out.requires_grad:
        return [torch.zeros_like(x) for x in t.values()]
    return torch.autograd.grad((out.double() * w).sum(), list(t.values()),
                               materialize_grads=True)


def run(fn, t, edge_index, edge_type):
    rte = None
    if 'table' in t:
        rows = torch.arange(edge_type.numel()) % TIMES
        rte = (t['table'], rows)
    return fn(t['q'], t['k'], t['v'], edge_index, edge_type, t['att'],
              t['pri'], t['msg'], rte=rte, edge_mask=t.get('mask'))


@pytest.mark.parametrize('backend,blocks,chunk_size', BACKENDS)
@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('dtype', list(TOL))
@pytest.mark.parametrize('rte', [False, True])
@pytest.mark.parametrize('mask', [False, True])
def test_backend_matches_definition(backend, blocks, kind, dtype, rte, mask,
                                    chunk_size):
    N, edge_index, edge_type, num_rel, block_layout = graph(kind, blocks)
    t = inputs(N, edge_type.numel(), num_rel, dtype, rte, mask)

    def ours(*args, **kwargs):
        return hgt_attention(*args, **kwargs, backend=backend,
                             chunk_size=chunk_size, blocks=block_layout)
    agg, alpha = run(ours, t, edge_index, edge_type)
    ref = {name: x.detach().double().requires_grad_()
           for name, x in t.items()}
    want_agg, want_alpha = run(spec_attention, ref, edge_index, edge_type)
    tol = TOL[dtype]
    assert agg.shape == (N, H, D) and alpha.shape == (edge_type.numel(), H)
    torch.testing.assert_close(agg.double(), want_agg, atol=tol, rtol=tol)
    torch.testing.assert_close(alpha.double(), want_alpha, atol=tol,
                               rtol=tol)

    w = torch.randn(agg.shape, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(3))
    for name, a, b in zip(t, grads(agg, w, t), grads(want_agg, w, ref)):
        scale = max(b.abs().amax().item(), 1.0) if b.numel() else 1.0
        torch.testing.assert_close(a.double(), b, atol=tol * scale,
                                   rtol=tol, msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('backend', ['ultrafast', 'memory_efficient'])
def test_chunked_backends_keep_no_graph_for_alpha(backend):
    """The chunked backends' attention weights are for inspection: no
    gradient flows through them (the aggregate carries it)."""
    N, edge_index, edge_type, num_rel, _ = graph('random', False)
    t = inputs(N, edge_type.numel(), num_rel, torch.float32, False, False)
    _, alpha = run(lambda *a, **k: hgt_attention(*a, **k, backend=backend),
                   t, edge_index, edge_type)
    assert not alpha.requires_grad


@pytest.mark.parametrize('backend', dispatch.BACKENDS)
def test_auto_and_names_agree(backend):
    """Every name computes the same numbers as the definition (float64),
    ``'auto'`` included."""
    N, edge_index, edge_type, num_rel, _ = graph('repeated', False)
    t = inputs(N, edge_type.numel(), num_rel, torch.float64, True, False)
    agg, _ = run(lambda *a, **k: hgt_attention(*a, **k, backend=backend),
                 t, edge_index, edge_type)
    want, _ = run(spec_attention, t, edge_index, edge_type)
    torch.testing.assert_close(agg, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize('kwargs,match', [
    ({'backend': 'fast'}, "'backend' must be one of"),
    ({'chunk_size': 0}, "'chunk_size' must be an int"),
    ({'memory_budget': 0}, "'memory_budget' must be"),
])
def test_bad_arguments(kwargs, match):
    N, edge_index, edge_type, num_rel, _ = graph('random', False)
    t = inputs(N, edge_type.numel(), num_rel, torch.float32, False, False)
    with pytest.raises(ValueError, match=match):
        run(lambda *a, **k: hgt_attention(*a, **k, **kwargs), t,
            edge_index, edge_type)


def test_memory_budget_picks_what_fits_and_stays_exact(monkeypatch):
    """``memory_budget`` runs the fastest backend whose estimate fits (a
    smaller chunk where that is enough) and changes no number."""
    g = torch.Generator().manual_seed(5)
    N, E, num_rel = 2000, 40000, 5
    edge_index = torch.randint(0, N, (2, E), generator=g)
    edge_type = torch.randint(0, num_rel, (E, ), generator=g)
    t = inputs(N, E, num_rel, torch.float64, False, False)
    work = dispatch.Workload(N, E, num_rel, H, D, 8, True)

    def need(name, chunk):
        return dispatch.choice_memory(dispatch.choose(name, chunk, CPU,
                                                      work), work)
    ran = []
    for name in ('pair_fold_attention', 'chunked_attention'):
        fn = getattr(attention, name)

        def spy(*args, fn=fn, name=name):
            ran.append((name, args[-2]))
            return fn(*args)
        monkeypatch.setattr(attention, name, spy)
    want, _ = run(spec_attention, t, edge_index, edge_type)
    me_chunk = dispatch.CPU_CHUNK_SIZE['memory_efficient']
    for budget, expect in [
        (need('ultrafast', E), ('pair_fold_attention', 32768)),
        (need('ultrafast', dispatch.MIN_CHUNK_SIZE) - 1,
         ('chunked_attention', me_chunk)),
        (need('memory_efficient', me_chunk) - 1,
         ('chunked_attention', me_chunk // 2)),
    ]:
        agg, _ = run(lambda *a, **k: hgt_attention(
            *a, **k, memory_budget=budget), t, edge_index, edge_type)
        assert ran.pop() == expect
        torch.testing.assert_close(agg, want, atol=1e-10, rtol=1e-10)
