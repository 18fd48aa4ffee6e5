"""The hand-written dense backward (dense/function.py, steps.py, math.py)
against autograd through the plain forward, what it keeps, and which path
each call takes."""
import functools
import threading

import pytest
import torch
from conftest import randomize_
from test_dense_conv import KINDS, R, T, run_with_grads, soft_graph

from torch_geometric_hgt import DenseHGT, DenseHGTConv
from torch_geometric_hgt.dense import planner, steps
from torch_geometric_hgt.dense.planner import checkpointed_chunks
from torch_geometric_hgt.dense.core import dense_hgt
from torch_geometric_hgt.dense.math import layer_sizes, layer_weights
from torch_geometric_hgt.functional import dispatch

# (use_norm, in, out, heads): in == out has the skip gate; head size 8
# at 8 nodes per graph runs the attention kernels
SHAPES = [(True, 8, 8, 2), (False, 8, 8, 2), (False, 8, 12, 3),
          (True, 8, 12, 3), (True, 8, 16, 2), (False, 16, 16, 2)]
KERNEL_SHAPES = [s for s in SHAPES if s[2] // s[3] % 8 == 0]


def dense_layer(layer, x, P, adj, E, mask, size):
    """The core's ``'function'`` backend with ``layer``'s weights."""
    return dense_hgt(x, P, adj, E, layer_weights(layer), layer_sizes(layer),
                     mask, backend='function', chunk_size=size)


def autograd_chunks(layer, size, mask):
    """The plain forward over chunks, differentiated by autograd."""
    return lambda *inputs: checkpointed_chunks(
        functools.partial(layer.run_chunk, backend='autograd'),
        (*inputs, mask), size, checkpoint=False)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('use_norm,in_dim,out_dim,heads', SHAPES)
@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('N', [5, 8])
def test_matches_autograd_values_and_all_gradients(
        kind, use_norm, in_dim, out_dim, heads, train, N, dense_backend):
    # training: dropout draws the same masks in the same order
    layer = randomize_(DenseHGTConv(in_dim, out_dim, T, R, heads,
                                    use_norm=use_norm, dropout=0.3))
    layer.train(train)
    x, P, adj, E, mask = soft_graph(kind, N=N, in_dim=in_dim)
    inputs = [t.clone().requires_grad_() for t in (x, P, adj, E)]
    weight = torch.randn(*x.shape[:2], out_dim)
    results = []
    for run in (autograd_chunks(layer, 2, mask),
                lambda *a: dense_layer(layer, *a, mask, 2)):
        torch.manual_seed(5)
        results.append(run_with_grads(run, layer, inputs, weight))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    # two float32 sums in different orders: without the norm, d adj
    # reaches ~1500 at in = out = 16, and each is ~6e-6 of that off
    # float64
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=2e-5 * max(1., float(w.abs().max())),
                              rtol=0)
    if train:  # dropout was on
        with torch.no_grad():
            assert not torch.allclose(want, layer.eval()(*inputs, mask))


@pytest.mark.parametrize('N,out_dim', [(4, 6), (8, 16)])
def test_gradcheck_float64(N, out_dim, dense_backend):
    # gradcheck differentiates one graph many times: checkpointed chunks
    # run the hand-written backward on a fresh recomputation each time
    layer = randomize_(DenseHGTConv(6, out_dim, T, R, 2, chunk_size=1,
                                    checkpoint=True, validate=False))
    layer.double().eval()  # not validated: perturbed adj leaves [0, 1]
    x, P, adj, E, mask = soft_graph('masked', B=2, N=N, in_dim=6)
    inputs = [t.double().requires_grad_() for t in (x, P, adj, E)]
    assert torch.autograd.gradcheck(lambda *a: layer(*a, mask), inputs)


def test_float64_autograd_backend_keeps_float64(dense_backend):
    # the autograd backend's softmax runs in the inputs' precision when
    # that is wider than float32 (float32 would leave ~1e-7 differences)
    layer = randomize_(DenseHGTConv(6, 8, T, R, 2)).double().eval()
    x, P, adj, E, mask = soft_graph('masked', B=3, N=8, in_dim=6)
    inputs = [t.double().requires_grad_() for t in (x, P, adj, E)]
    weight = torch.randn(3, 8, 8, dtype=torch.float64)
    results = [run_with_grads(run, layer, inputs, weight) for run in (
        autograd_chunks(layer, 2, mask),
        lambda *a: dense_layer(layer, *a, mask, 2))]
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-10 * max(1., float(w.abs().max())),
                              rtol=0)


def test_second_backward_through_one_graph_raises():
    layer = DenseHGTConv(8, 8, T, R, 2)
    x, P, adj, E, mask = soft_graph('random')
    out = layer(x.requires_grad_(), P, adj, E, mask).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='checkpoint=True'):
        out.backward()


@pytest.mark.parametrize('train', [False, True])
def test_keeps_documented_bytes_per_node_and_frees_them(train):
    # 4 (3 out + H N + 2 T) bytes per node, plus out bytes of dropout mask
    B, N, out, H = 6, 5, 12, 3
    layer = DenseHGTConv(8, out, T, R, H).train(train)
    x, P, adj, E, mask = soft_graph('random', B=B, N=N)
    out_t = dense_layer(layer, x.requires_grad_(), P, adj, E, mask, 4)
    kept = sum(t.numel() * t.element_size() for t in out_t.grad_fn.state
               if t is not None)
    assert kept == B * N * (4 * (3 * out + H * N + 2 * T) + out * train)
    out_t.sum().backward()
    assert out_t.grad_fn.state is None


def test_no_grad_gives_the_same_values_and_keeps_nothing(dense_backend):
    layer = randomize_(DenseHGTConv(8, 8, T, R, 2)).eval()
    x, P, adj, E, mask = soft_graph('masked', B=5)
    want = dense_layer(layer, x, P, adj, E, mask, 2)
    with torch.no_grad():
        got = dense_layer(layer, x, P, adj, E, mask, 2)
    assert want.grad_fn is not None and got.grad_fn is None
    assert torch.equal(got, want)


@pytest.mark.parametrize('N,out_dim', [(5, 8), (8, 16)])
@pytest.mark.parametrize('autocast', [False, True])  # fused / autograd path
def test_strided_inputs_give_the_same_values_and_gradients(
        N, out_dim, autocast, dense_backend):
    layer = randomize_(DenseHGTConv(8, out_dim, T, R, 2)).eval()
    x, P, adj, E, mask = soft_graph('masked', B=3, N=N)
    weight = torch.randn(3, N, out_dim)
    results = []
    for strided in (False, True):
        inputs = [t.clone() for t in (x, P, adj, E)]
        if strided:  # same values, other memory layouts
            inputs[2] = inputs[2].transpose(1, 2).contiguous().transpose(1, 2)
            inputs[3] = inputs[3].permute(0, 3, 1, 2).contiguous() \
                .permute(0, 2, 3, 1)
            assert not inputs[3].is_contiguous()
        inputs = [t.requires_grad_() for t in inputs]
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            results.append(run_with_grads(lambda *a: layer(*a, mask), layer,
                                          inputs, weight))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-5)


@pytest.mark.parametrize('grad', [True, False])
@pytest.mark.parametrize('N,out_dim', [(5, 8), (8, 16)])
def test_no_graphs(grad, N, out_dim):
    layer = DenseHGTConv(8, out_dim, T, R, 2)
    x, P, adj, E, mask = soft_graph('masked', B=0, N=N)
    inputs = [t.requires_grad_() for t in (x, P, adj, E)]
    with torch.set_grad_enabled(grad):
        out = layer(*inputs, mask)
    assert out.shape == (0, N, out_dim)
    if grad:
        out.sum().backward()
        assert all(t.grad.shape == t.shape for t in inputs)


def test_paths_by_dtype_and_autocast():
    layer = DenseHGTConv(8, 8, T, R, 2)
    x = torch.randn(2, 3, 8)
    def backend(layer, x):
        return dispatch.dense_backend(x, layer.relation_att.dtype)
    assert backend(layer, x) == 'function'
    assert backend(layer.double(), x.double()) == 'function'
    assert backend(layer.bfloat16(), x.bfloat16()) == 'autograd'
    assert backend(layer.float(), x.double()) == 'autograd'
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert backend(layer.float(), x) == 'autograd'


@pytest.mark.usefixtures('two_threads')
@pytest.mark.parametrize('train', [False, True])
def test_chunks_on_two_workers_match_one_and_repeat_bitwise(
        train, dense_backend, monkeypatch):
    layer = randomize_(DenseHGTConv(8, 16, T, R, 2, dropout=0.3))
    layer.train(train)
    x, P, adj, E, mask = soft_graph('masked', B=7, N=8)  # 4 chunks
    inputs = [t.clone().requires_grad_() for t in (x, P, adj, E)]
    weight = torch.randn(7, 8, 16)
    threads = set()
    chunk_forward = steps.chunk_forward

    def spy(*args):
        threads.add(threading.get_ident())
        return chunk_forward(*args)

    monkeypatch.setattr(steps, 'chunk_forward', spy)
    runs = []
    for workers in (2, 2, 1):
        monkeypatch.setattr(planner, 'chunk_workers',
                            lambda n, device, w=workers: min(w, n))
        torch.manual_seed(5)  # the same dropout masks for each chunk
        runs.append(run_with_grads(lambda *a: dense_layer(layer, *a, mask, 2),
                                   layer, inputs, weight))
    assert len(threads - {threading.get_ident()}) >= 2
    (got, got_grads), (again, again_grads), (want, want_grads) = runs
    assert torch.equal(got, again)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, again_grads))
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-5 * max(1., float(w.abs().max())),
                              rtol=0)
    monkeypatch.undo()  # two workers again
    with torch.inference_mode():  # thread-local, so handed to the workers
        assert torch.equal(layer.eval()(*inputs, mask),
                           dense_layer(layer, *inputs, mask, 2))


@pytest.mark.parametrize('with_x', [True, False])
def test_model_per_layer_equals_checkpointed_chunks(with_x, dense_backend):
    model = randomize_(DenseHGT(8, 12, 6, T, R, n_heads=2, n_layers=3,
                                chunk_size=2)).eval()
    x, P, adj, E, mask = soft_graph('masked', B=5)
    graph = {'node_types': P.requires_grad_(), 'adj_matrix': adj,
             'edge_types': E, 'node_mask': mask}
    if with_x:
        graph['x'] = x.requires_grad_()
    weight = torch.randn(5, 5, 6)
    inputs = [graph[k] for k in ('x', 'node_types') if k in graph]
    results = []
    for checkpoint in (True, False):
        model.checkpoint = checkpoint
        results.append(run_with_grads(lambda *_: model(graph), model,
                                      inputs, weight))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('kind', ['random', 'masked', 'zero_adj'])
@pytest.mark.parametrize('use_norm,in_dim,out_dim,heads', KERNEL_SHAPES)
@pytest.mark.parametrize('N', [5, 8])
def test_cuda_matches_cpu_values_and_all_gradients(
        kind, use_norm, in_dim, out_dim, heads, N):
    # on CUDA the hand-written backward runs the torch code only; the CPU
    # run at N = 8 takes the C kernels
    layer = randomize_(DenseHGTConv(in_dim, out_dim, T, R, heads,
                                    use_norm=use_norm, chunk_size=2)).eval()
    x, P, adj, E, mask = soft_graph(kind, N=N, in_dim=in_dim)
    weight = torch.randn(*x.shape[:2], out_dim)
    results = []
    for device in ('cpu', 'cuda'):
        layer.to(device)
        inputs = [t.detach().to(device).requires_grad_()
                  for t in (x, P, adj, E)]
        assert dispatch.dense_backend(
            inputs[0], layer.relation_att.dtype) == 'function'
        m = None if mask is None else mask.to(device)
        out, grads = run_with_grads(lambda *a: layer(*a, m), layer, inputs,
                                    weight.to(device))
        results.append((out.cpu(), [g.cpu() for g in grads]))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=2e-5 * max(1., float(w.abs().max())),
                              rtol=0)
