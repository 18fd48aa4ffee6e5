"""The C kernels of the dense backward (``torch_geometric_hgt.native``)
against the torch code they stand in for, and how they are built or left
out."""
import pytest
import torch
from conftest import randomize_
from test_dense_conv import R, soft_graph

from torch_geometric_hgt import DenseHGTConv
from torch_geometric_hgt import native
from torch_geometric_hgt.dense import kernels, steps
from torch_geometric_hgt.dense import math as dense_math
from torch_geometric_hgt.functional.update import dropout_keep

T = 3

needs_library = pytest.mark.skipif(native.library() is None,
                                   reason='the C kernels do not build here')


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """An empty kernel cache and a library looked up anew."""
    monkeypatch.setenv('TORCH_GEOMETRIC_HGT_CACHE', str(tmp_path))
    monkeypatch.delenv('TORCH_GEOMETRIC_HGT_NATIVE', raising=False)
    native.runtime.load_all.cache_clear()
    yield
    native.runtime.load_all.cache_clear()


def update_case(n, dtype, use_norm, skip, dropout):
    in_dim = 8 if skip else 6
    layer = randomize_(DenseHGTConv(in_dim, 8, T, 2, 2, dropout=0.3,
                                    use_norm=use_norm)).to(dtype)
    with torch.no_grad():
        w = dense_math.layer_weights(layer)
    s = dense_math.Sizes(in_dim, 8, T, 2, 2, 0.3 if dropout else 0., 1e-5)
    agg, x = torch.randn(n, 8, dtype=dtype), torch.randn(n, in_dim,
                                                         dtype=dtype)
    P = torch.randn(n, T, dtype=dtype).softmax(-1)
    keep = dropout_keep((n, 1, 8), 0.3, x.device) if dropout else None
    return agg, x, P, keep, w, s


@needs_library
@pytest.mark.usefixtures('two_threads')
@pytest.mark.parametrize('n', [0, 5, 1100])  # none, one thread, two
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('use_norm', [True, False])
@pytest.mark.parametrize('skip', [True, False])
@pytest.mark.parametrize('dropout', [True, False])
def test_update_kernels_match_torch(n, dtype, use_norm, skip, dropout):
    agg, x, P, keep, w, s = update_case(n, dtype, use_norm, skip, dropout)
    tol = dict(atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=1e-5)
    want = dense_math.update_forward(agg, x, P, keep, w, s)
    got = kernels.update_forward(agg, x, P, keep, w, s, None, None)
    for g, e in zip(got, want):
        assert (g is None) == (e is None)
        if e is not None:
            assert g.shape == e.shape and torch.allclose(g, e, **tol)

    saved = dense_math.Saved(None, None, got[1], got[2], keep)
    grad = torch.randn(n, 8, dtype=dtype)
    want = dense_math.update_backward(grad, agg, x, P, saved, w, s, True)
    got = kernels.update_backward(grad, agg, x, P, saved, w, s, True)
    flat = [*want[:4], *want[4]], [*got[:4], *got[4]]
    for e, g in zip(*flat):
        assert (g is None) == (e is None)
        if e is not None:
            scale = float(e.abs().max()) if e.numel() else 1.
            assert g.shape == e.shape
            assert torch.allclose(g, e, atol=tol['atol'] * max(1., scale),
                                  rtol=0)


@needs_library
@pytest.mark.usefixtures('two_threads')
@pytest.mark.parametrize('n', [0, 7, 1100])
@pytest.mark.parametrize('with_dx', [True, False])
def test_typed_backward_matches_torch(n, with_dx):
    dzv, x = torch.randn(n, T, 6), torch.randn(n, 6)
    P = torch.randn(n, T).softmax(-1)
    dkqv, bias = torch.randn(n, 9), torch.randn(T, 9)
    dP, dx = torch.randn(n, T), torch.randn(n, 6)
    want_dP = dP + torch.linalg.vecdot(dzv, x.unsqueeze(1)) + dkqv @ bias.t()
    want_dx = dx + (P.unsqueeze(-1) * dzv).sum(1)
    got_dx = dx.clone() if with_dx else None
    dbias = native.typed_backward(dzv, x, P, dkqv, bias, dP, got_dx)
    assert torch.allclose(dP, want_dP, atol=1e-5)
    assert torch.allclose(dbias, P.t() @ dkqv, atol=1e-4)
    if with_dx:
        assert torch.allclose(got_dx, want_dx, atol=1e-5)


@needs_library
def test_same_inputs_give_bitwise_same_gradients():
    agg, x, P, keep, w, s = update_case(700, torch.float32, True, True, True)
    out = kernels.update_forward(agg, x, P, keep, w, s, None, None)
    saved = dense_math.Saved(None, None, out[1], out[2], keep)
    grad = torch.randn(700, 8)
    runs = [kernels.update_backward(grad, agg, x, P, saved, w, s, True)
            for _ in range(2)]
    for a, b in zip([*runs[0][:4], *runs[0][4]], [*runs[1][:4], *runs[1][4]]):
        assert torch.equal(a, b)


@pytest.mark.usefixtures('fresh_library')
def test_build_failure_warns_and_leaves_the_torch_code(monkeypatch):
    monkeypatch.setenv('CC', 'false')  # a "compiler" that always fails
    with pytest.warns(UserWarning, match='did not build'):
        assert native.library() is None
    x = torch.randn(2, 3)
    assert not native.usable(x)


@pytest.mark.usefixtures('fresh_library')
def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv('TORCH_GEOMETRIC_HGT_NATIVE', '0')
    assert native.library() is None


@needs_library
@pytest.mark.usefixtures('fresh_library')
def test_builds_into_the_cache_once(tmp_path):
    assert native.library() is not None
    built = sorted(p.name for p in tmp_path.iterdir())
    assert len(built) == 2 and all(p.endswith('.so') for p in built)
    native.runtime.load_all.cache_clear()
    assert native.library() is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == built


@needs_library
@pytest.mark.usefixtures('fresh_library', 'two_threads')
def test_a_layer_on_two_workers_builds_the_kernels_once(monkeypatch):
    builds = []
    monkeypatch.setattr(native.build, 'build_library',
                        spy(native.build.build_library, builds))
    layer = DenseHGTConv(8, 16, T, R, 2, chunk_size=1).eval()
    x, P, adj, E, mask = soft_graph('random', B=4, N=8)
    layer(x, P, adj, E, mask)
    assert len(builds) == len(native.build.REALS)  # once per dtype


def test_usable_only_for_cpu_float32_and_float64():
    for dtype in (torch.float16, torch.bfloat16):
        assert not native.usable(torch.zeros(1, dtype=dtype))
    assert native.usable(torch.zeros(1)) == (native.library() is not None)


@needs_library
@pytest.mark.parametrize('p', [0.0, 0.2, 0.5, 1.0])
def test_dropout_mask_keeps_one_minus_p(p):
    keep = dropout_keep((1000, 1, 1000), p, 'cpu')
    assert keep.dtype == torch.bool and keep.shape == (1000, 1, 1000)
    # 10^6 draws: the standard error of the rate is at most 5e-4
    assert abs(keep.float().mean().item() - (1 - p)) < 5e-3


@needs_library
def test_dropout_mask_is_seeded_and_split_independent():
    masks = []
    for threads in (1, 2, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        torch.manual_seed(3)
        masks.append(dropout_keep((4001, 3), 0.3, 'cpu'))
        torch.set_num_threads(before)
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[1],
                                                           masks[2])
    out = torch.empty(4001, 3, dtype=torch.bool)
    assert dropout_keep((4001, 3), 0.3, 'cpu', out=out) is out
    assert not torch.equal(out, masks[0])  # the generator moved on


def spy(fn, calls):
    """``fn``, appending to ``calls`` at each call."""
    def wrapped(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)
    return wrapped


def attention_case(kind, dtype, d, b):
    """A chunk of ``b`` 8-node graphs, heads of size ``d``, the layer's
    weights and their transposes for :func:`steps.chunk_backward`."""
    H = 2
    layer = randomize_(DenseHGTConv(8, H * d, T, R, H)).to(dtype)
    x, P, adj, E, mask = soft_graph(kind, B=b, N=8)
    if kind == 'extreme':  # scores beyond the exponent's cap and underflow
        x = x * 40
    with torch.no_grad():
        w = dense_math.layer_weights(layer)
    s = dense_math.Sizes(8, H * d, T, R, H, 0., 1e-5)
    wt = dense_math.transposed_weights(w, T)
    inputs = [t.to(dtype) for t in (x, P, adj, E)]
    return inputs, mask, w, s, wt


def chunk_results(inputs, mask, w, s, wt, dtype=None):
    """The chunk's output, softmax weights and gradients; in ``dtype`` if
    given (inputs and weights cast, the same output gradient)."""
    if dtype is not None:
        inputs = [t.to(dtype) for t in inputs]
        w = dense_math.Weights(*[None if t is None else t.to(dtype)
                                 for t in w])
        wt = tuple(t.to(dtype) for t in wt)
    out, saved = steps.chunk_forward(*inputs, mask, w, s, None)
    grad = torch.randn(out.shape).to(out.dtype)
    got, got_w = steps.chunk_backward(grad, *inputs, mask, w, s, saved,
                                      [True] * 4, wt)
    return [out, saved.expo, *got, *[t for t in got_w if t is not None]]


@needs_library
@pytest.mark.usefixtures('two_threads')
@pytest.mark.parametrize('kind', ['random', 'masked', 'no_in_edges',
                                  'zero_adj', 'hard', 'extreme'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
# d = 32: the users' head size; 24: 16- and 8-float vectors in one call
# where AVX-512 builds
@pytest.mark.parametrize('d', [8, 16, 24, 32])
@pytest.mark.parametrize('b', [1, 70])  # one thread; two, with part blocks
def test_attention_kernels_match_torch(kind, dtype, d, b, monkeypatch):
    case = attention_case(kind, dtype, d, b)
    calls = []
    monkeypatch.setattr(native, 'attention_forward', spy(
        native.attention_forward, calls))
    torch.manual_seed(0)
    got = chunk_results(*case)
    assert len(calls) == 2  # forward, and the backward's recomputation
    monkeypatch.setattr(native, 'attention_usable', lambda N, d: False)
    torch.manual_seed(0)
    want = chunk_results(*case)
    assert len(calls) == 2
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert all(torch.isfinite(g).all() for g in got)
    if kind == 'extreme' and dtype == torch.float32:
        # float32 rounding of scores in the thousands moves both codes'
        # gradients by ~1e-4: the kernels must be as close to float64 as
        # the torch code is
        torch.manual_seed(0)
        exact = chunk_results(*case, dtype=torch.float64)
        for g, w, e in zip(got, want, exact):
            e = e.to(dtype)
            assert (g - e).abs().max() <= 2 * (w - e).abs().max() + \
                tol * float(e.abs().max().clamp(min=1))
    else:
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=tol, atol=tol * float(
                w.abs().max().clamp(min=1)))


def test_attention_kernels_take_8_node_graphs_with_head_sizes_of_8k():
    assert native.attention_usable(8, 8) and native.attention_usable(8, 32)
    assert not native.attention_usable(7, 8)
    assert not native.attention_usable(16, 8)
    assert not native.attention_usable(8, 12)


@needs_library
def test_attention_backward_is_bitwise_repeatable():
    case = attention_case('masked', torch.float32, 8, 40)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(chunk_results(*case))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
