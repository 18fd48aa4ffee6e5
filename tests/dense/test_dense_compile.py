"""torch.compile(fullgraph=True, dynamic=True) of the dense layers equals
eager, values and input gradients (the layers take their autograd path
under compile). Slow: each compilation takes ~0.5-1.5 min on 2 cores."""
import pytest
import torch
from conftest import randomize_

from torch_geometric_hgt import (DenseHGTConv, DifferentiableDenseHGTConv,
                                 LoopDenseHGTConv)

T, R = 3, 2


def _inputs(B: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 5, 8, generator=g)
    P = torch.softmax(torch.randn(B, 5, T, generator=g), -1)
    adj = torch.rand(B, 5, 5, generator=g) * \
        (torch.rand(B, 5, 5, generator=g) > 0.3)
    E = torch.softmax(torch.randn(B, 5, 5, R, generator=g), -1)
    return [t.requires_grad_() for t in (x, P, adj, E)]


def _value_and_grads(layer, inputs, weight):
    out = layer(*inputs)
    return [out, *torch.autograd.grad((out * weight).sum(), inputs)]


@pytest.mark.slow
@pytest.mark.parametrize('cls', [DenseHGTConv, DifferentiableDenseHGTConv])
def test_compile_equals_eager(cls):
    torch._dynamo.reset()
    layer = randomize_(cls(8, 8, T, R, 2)).eval()
    if cls is DenseHGTConv:  # its reference, as a second check
        loop = LoopDenseHGTConv(8, 8, T, R, 2).eval()
        loop.load_state_dict(layer.state_dict())
    compiled = torch.compile(layer, fullgraph=True, dynamic=True)
    for seed, B in enumerate((3, 4)):  # a second size reuses the graph
        inputs = _inputs(B, seed)
        weight = torch.randn(B, 5, 8)
        want = _value_and_grads(layer, inputs, weight)
        got = _value_and_grads(compiled, inputs, weight)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-5)
        if cls is DenseHGTConv:
            assert torch.allclose(got[0], loop(*inputs), atol=1e-5)
