import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

T, R = 4, 3  # node types, relations of the test graphs

GRAPH_KINDS = ['random', 'no_in_edges', 'empty_type', 'self_loops',
               'repeated', 'no_edges', 'one_node']

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA'))]


@contextlib.contextmanager
def repeatable(device: str):
    """Bitwise-repeatable kernels on ``device``: CUDA sums edges into nodes
    with atomic adds unless deterministic algorithms are on (which need
    cuBLAS's fixed workspace); CPU needs nothing."""
    if device != 'cuda':
        yield
        return
    env = os.environ.get('CUBLAS_WORKSPACE_CONFIG')
    was = torch.are_deterministic_algorithms_enabled()
    os.environ['CUBLAS_WORKSPACE_CONFIG'] = ':4096:8'
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        if env is None:
            del os.environ['CUBLAS_WORKSPACE_CONFIG']
        else:
            os.environ['CUBLAS_WORKSPACE_CONFIG'] = env


def assert_training_step_repeats(build, device: str, seed: int,
                                 runs: int = 3):
    """``build()`` gives ``(module, function of one float input, input)``
    and is called after ``torch.manual_seed(seed)``; over ``runs`` such
    training steps on ``device`` the output (dropout masks included), the
    input's gradient and every parameter's must repeat bit for bit."""
    results = []
    for _ in range(runs):
        torch.manual_seed(seed)
        module, fn, inp = build()
        inp = inp.detach().requires_grad_()
        with repeatable(device):
            out = fn(inp)
            (out * torch.linspace(-1, 1, out.numel(), device=device)
             .view_as(out)).sum().backward()
        results.append([out.detach(), inp.grad] + [
            torch.zeros_like(p) if p.grad is None else p.grad
            for p in module.parameters()])
    for result in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], result))


def make_graph(kind: str, in_dim: int = 8, seed: int = 0, max_len: int = 10):
    """A small typed graph exercising one awkward case (see GRAPH_KINDS)."""
    g = torch.Generator().manual_seed(seed)
    N, E = (1, 3) if kind == 'one_node' else (13, 40)
    x = torch.randn(N, in_dim, generator=g)
    node_type = torch.randint(0, T, (N, ), generator=g)
    if kind == 'empty_type':
        node_type = node_type.clamp(max=T - 2)  # type T-1 has no node
    src = torch.randint(0, N, (E, ), generator=g)
    dst = torch.randint(0, N, (E, ), generator=g)
    if kind == 'no_in_edges':
        dst = dst % (N // 2)  # the upper half has no in-edge
    if kind == 'self_loops':
        dst[::2] = src[::2]
    if kind == 'repeated':
        src[E // 2:], dst[E // 2:] = src[:E // 2], dst[:E // 2]
    edge_index = torch.stack([src, dst])
    edge_type = torch.randint(0, R, (E, ), generator=g)
    if kind == 'no_edges':
        edge_index, edge_type = edge_index[:, :0], edge_type[:0]
    edge_time = torch.randint(0, max_len, (edge_type.numel(), ), generator=g)
    return x, node_type, edge_index, edge_type, edge_time


def randomize_(module: torch.nn.Module, seed: int = 0):
    """Unit-scale random weights, so no parameter sits at a special value
    (ones, zeros) that could hide a wrong formula."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


@pytest.fixture
def two_threads():
    """Two intra-op threads: the C kernels split nodes and the dense layer
    runs chunks on two workers (both follow torch's count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=['native', 'torch'])
def dense_backend(request):
    """Runs a test with the C kernels of the dense backward and with the
    torch code that stands in for them."""
    from torch_geometric_hgt import native
    if request.param == 'torch':
        with native.enabled(False):
            yield request.param
        return
    if native.library() is None:
        pytest.skip('the C kernels do not build here')
    yield request.param


#: (device, dtype) pairs autocast runs in: bfloat16 on CPU, both half
#: types on CUDA
AUTOCAST = [('cpu', torch.bfloat16)] + [
    pytest.param('cuda', dtype, marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason='needs CUDA'))
    for dtype in (torch.float16, torch.bfloat16)]


def assert_autocast_close(layer, inputs, device: str, dtype: torch.dtype):
    """Under autocast to ``dtype`` on ``device`` the layer's output is
    finite and within 10% of its largest float32 value of the float32
    result (the softmax runs in float32)."""
    want = layer(*inputs)
    layer = layer.to(device)
    with torch.autocast(device, dtype=dtype):
        got = layer(*[t.to(device) for t in inputs])
    assert torch.isfinite(got).all()
    assert (got.float().cpu() - want).abs().max() < 0.1 * want.abs().max()
