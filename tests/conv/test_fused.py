"""The fused backends: chunking, compacted (target, relation) pairs,
CUDA."""
import pytest
import torch
from conftest import make_graph, randomize_
from reference import spec_sparse

from torch_geometric_hgt import (LoopHGTConv, MemoryEfficientHGTConv,
                                 UltraFastHGTConv)
from torch_geometric_hgt.conv import base
from torch_geometric_hgt.functional.dispatch import (CPU_CHUNK_SIZE,
                                                     CUDA_CHUNK_SIZE,
                                                     edges_per_chunk)

FUSED = [UltraFastHGTConv, MemoryEfficientHGTConv]


def many_relation_graph(R=12, N=9, E=30, T=3, seed=0):
    """N * R > E: the fused layers compact the (target, relation) pairs."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, 8, generator=g),
            torch.randint(0, T, (N, ), generator=g),
            torch.randint(0, N, (2, E), generator=g),
            torch.randint(0, R, (E, ), generator=g),
            torch.randint(0, 10, (E, ), generator=g))


def compare(layer, ref, args, atol=1e-4):
    x = args[0].clone().requires_grad_()
    w = None
    outs, grads = [], []
    for mod in (layer, ref):
        out = mod(x, *args[1:])
        w = torch.randn_like(out) if w is None else w
        wrt = [x] + list(mod.parameters())
        g = torch.autograd.grad((out * w).sum(), wrt, allow_unused=True)
        outs.append(out)
        grads.append([torch.zeros_like(t) if d is None else d
                      for t, d in zip(wrt, g)])
    assert torch.allclose(outs[0], outs[1], atol=atol, rtol=0)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize('cls', FUSED)
@pytest.mark.parametrize('chunk_size', [1, 7, 10**6, 'auto', None])
@pytest.mark.parametrize('kind', ['random', 'repeated', 'no_in_edges'])
def test_any_chunk_size_gives_the_same_result(cls, chunk_size, kind):
    x, node_type, edge_index, edge_type, edge_time = make_graph(kind)
    layer = randomize_(cls(8, 8, 4, 3, 2, use_RTE=True, max_len=10,
                           chunk_size=chunk_size)).eval()
    ref = LoopHGTConv(8, 8, 4, 3, 2, use_RTE=True, max_len=10).eval()
    ref.load_state_dict(layer.state_dict())
    compare(layer, ref, (x, node_type, edge_index, edge_type, edge_time))


@pytest.mark.parametrize('cls', FUSED)
@pytest.mark.parametrize('use_RTE', [False, True])
def test_many_relations_compacted_pairs(cls, use_RTE):
    x, node_type, edge_index, edge_type, edge_time = many_relation_graph()
    layer = randomize_(cls(8, 8, 3, 12, 2, use_RTE=use_RTE, max_len=10,
                           chunk_size=4)).eval()
    args = (x, node_type, edge_index, edge_type,
            edge_time if use_RTE else None)
    out, att = layer(*args, return_attention_weights=True)
    ref, ref_att = spec_sparse(layer, *args)
    assert torch.allclose(out, ref, atol=1e-4)
    assert torch.allclose(att, ref_att, atol=1e-4)
    loop = LoopHGTConv(8, 8, 3, 12, 2, use_RTE=use_RTE, max_len=10).eval()
    loop.load_state_dict(layer.state_dict())
    compare(layer, loop, args)


def test_checkpoint_equals_plain_with_grads():
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    plain = randomize_(MemoryEfficientHGTConv(8, 8, 4, 3, 2, dropout=0.0,
                                              chunk_size=5))
    ckpt = MemoryEfficientHGTConv(8, 8, 4, 3, 2, dropout=0.0, chunk_size=5,
                                  checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    compare(ckpt.train(), plain.train(), (x, node_type, edge_index,
                                          edge_type), atol=1e-6)


@pytest.mark.parametrize('chunk_size', [3, 10**6])
@pytest.mark.parametrize('checkpoint', [False, True])
def test_memory_efficient_replays_dropout_in_backward(chunk_size,
                                                      checkpoint):
    # the same seed gives the same masks in every forward call, so the
    # numerical Jacobian sees one function; backward must replay them
    x, node_type, edge_index, edge_type, edge_time = make_graph('repeated')
    layer = randomize_(MemoryEfficientHGTConv(
        8, 8, 4, 3, 2, dropout=0.4, use_RTE=True, max_len=10,
        chunk_size=chunk_size, checkpoint=checkpoint)).double().train()

    def fn(x):
        torch.manual_seed(0)
        return layer(x, node_type, edge_index, edge_type, edge_time)
    x = x.double().requires_grad_()
    assert not torch.equal(fn(x), layer.eval()(x, node_type, edge_index,
                                                edge_type, edge_time))
    layer.train()
    # many chunks: one random direction (fast mode) still sees a mask
    # that backward failed to replay
    assert torch.autograd.gradcheck(fn, (x, ), atol=1e-6,
                                    fast_mode=chunk_size == 3)


@pytest.mark.parametrize('backend', ['ultrafast', 'memory_efficient'])
def test_compiled_path_eager(backend):
    # what the fused layers run under torch.compile (projections, the
    # backend's edge phase, the update), checked eagerly with gradients
    # (the compile tests run forward only)
    x, node_type, edge_index, edge_type, edge_time = make_graph('repeated')
    layer = randomize_(UltraFastHGTConv(8, 8, 4, 3, 2, use_RTE=True,
                                        max_len=10, chunk_size=5)).eval()
    ref = LoopHGTConv(8, 8, 4, 3, 2, use_RTE=True, max_len=10).eval()
    ref.load_state_dict(layer.state_dict())

    class Path(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, *args):
            return self.layer.edge_route(backend, *args, None)[0]
    compare(Path(), ref, (x, node_type, edge_index, edge_type, edge_time))


def three_type_graph(N: int, E: int, R: int, F: int):
    """``(x, node_type, edge_index, edge_type)``: random, 3 node types,
    ``x`` requiring gradients."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(N, F, generator=g).requires_grad_(),
            torch.randint(0, 3, (N, ), generator=g),
            torch.randint(0, N, (2, E), generator=g),
            torch.randint(0, R, (E, ), generator=g))


def saved_sizes(run) -> list:
    """Elements of every storage autograd saves while ``run()`` builds (or
    differentiates) a graph; a saved view keeps its whole storage alive."""
    sizes = []

    def pack(t):
        sizes.append(t.untyped_storage().nbytes() // t.element_size())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sizes


def test_memory_efficient_keeps_no_edge_or_pair_features():
    N, E, R, F, H = 50, 400, 5, 8, 2
    args = three_type_graph(N, E, R, F)
    # node-level K, Q, V ([N, 3F]) or edge scores ([E, H]) at most; the
    # fastest layer keeps per-pair queries ([N R, F]), larger than both
    bound = max(N * 3 * F, E * H)
    assert bound < N * R * F
    lean = MemoryEfficientHGTConv(F, F, 3, R, H, chunk_size=64)
    assert max(saved_sizes(lambda: lean(*args))) <= bound
    assert max(saved_sizes(
        lambda: UltraFastHGTConv(F, F, 3, R, H)(*args))) > bound


@pytest.mark.parametrize('checkpoint', [False, True])
def test_memory_efficient_keeps_input_and_attention_only(checkpoint):
    # no K, V ([2, N, F]); the [E, H] weights unless checkpoint
    N, E, R, F, H = 200, 40, 5, 8, 2  # N F above the weights' 3 x 3F x F
    args = three_type_graph(N, E, R, F)
    layer = MemoryEfficientHGTConv(F, F, 3, R, H, checkpoint=checkpoint)
    sizes = saved_sizes(lambda: layer(*args))
    assert max(sizes) == N * F  # the input
    assert sum(s == E * H for s in sizes) == (0 if checkpoint else 1)
    assert E * H not in [p.numel() for p in layer.parameters()]


def test_memory_efficient_backward_differentiates_chunks_only():
    # the replay's local autograd must not reach node-level tensors (K, V
    # or a type's rows of x): that would keep them per chunk
    N, E, R, F, H = 2000, 4000, 3, 8, 2
    args = three_type_graph(N, E, R, F)
    out = MemoryEfficientHGTConv(F, F, 3, R, H, chunk_size=16)(*args)
    sizes = saved_sizes(lambda: out.sum().backward())
    assert sizes and max(sizes) < N * F // 6


def test_memory_efficient_refuses_double_backward():
    # its backward is first order only: an error, not a wrong Hessian
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    layer = MemoryEfficientHGTConv(8, 8, 4, 3, 2, dropout=0.0)
    x = x.requires_grad_()
    g, = torch.autograd.grad(
        (layer(x, node_type, edge_index, edge_type) ** 2).sum(), x,
        create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable'):
        g.sum().backward()


@pytest.mark.parametrize('cls', FUSED)
@pytest.mark.parametrize('chunk_size', [0, -3, 2.5, 'big', True])
def test_bad_chunk_size(cls, chunk_size):
    with pytest.raises(ValueError, match="'chunk_size' must be an int"):
        cls(8, 8, 4, 3, 2, chunk_size=chunk_size)


@pytest.mark.parametrize('cls,forward', [
    (UltraFastHGTConv, 'pooled_forward'),
    (MemoryEfficientHGTConv, 'target_chunked_forward')])
@pytest.mark.parametrize('chunk_size', ['auto', None, 5])
def test_chunk_size_default_depends_on_the_device(
        cls, forward, chunk_size, monkeypatch):
    seen = []
    real = getattr(base, forward)
    position = 5 if forward == 'pooled_forward' else 6
    monkeypatch.setattr(base, forward, lambda *a, **k:
                        seen.append(a[position]) or real(*a, **k))
    layer = cls(8, 8, 4, 3, 2, chunk_size=chunk_size)
    graph = make_graph('random')
    layer(*graph[:4])
    # 'auto': the device's size; None: all edges in one chunk
    E = graph[3].numel()
    cpu_default = CPU_CHUNK_SIZE[cls.backend]
    want = {'auto': (cpu_default, CUDA_CHUNK_SIZE), None: (E, E),
            5: (5, 5)}[chunk_size]
    assert seen == [want[0]]
    cuda = edges_per_chunk(chunk_size, cls.backend, torch.device('cuda'), E)
    assert cuda == want[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('name', ['vectorized', 'ultrafast',
                                  'memory_efficient'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.bfloat16])
def test_cuda_matches_cpu(name, dtype):
    from torch_geometric_hgt.conv import CONVS
    x, node_type, edge_index, edge_type, edge_time = make_graph('repeated')
    layer = randomize_(CONVS[name](8, 8, 4, 3, 2, use_RTE=True,
                                   max_len=10)).eval()
    x.requires_grad_()
    want = layer(x, node_type, edge_index, edge_type, edge_time)
    (want_grad, ) = torch.autograd.grad(want.sum(), x)
    x_cuda = x.detach().cuda().requires_grad_()
    args = [t.cuda() for t in (node_type, edge_index, edge_type, edge_time)]
    layer = layer.cuda()
    with torch.autocast('cuda', dtype=dtype,
                        enabled=dtype != torch.float32):
        got = layer(x_cuda, *args)
    (got_grad, ) = torch.autograd.grad(got.float().sum(), x_cuda)
    tol = 1e-4 if dtype == torch.float32 else 0.1
    assert torch.isfinite(got).all() and torch.isfinite(got_grad).all()
    assert (got.float().cpu() - want).abs().max() < tol
    scale = want_grad.abs().max().clamp(min=1)
    assert (got_grad.cpu() - want_grad).abs().max() < tol * scale
