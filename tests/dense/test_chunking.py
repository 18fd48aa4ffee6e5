"""chunked(): checkpointed chunks give plain autograd's values and
gradients, dropout included."""
import pytest
import torch
from conftest import randomize_
from test_dense_conv import R, T, soft_graph

from torch_geometric_hgt import DenseHGTConv
from torch_geometric_hgt.dense.chunking import chunked, resolve_chunk_size


@pytest.mark.parametrize('size', [1, 2, 5])
def test_checkpoint_matches_plain_autograd_with_dropout(size):
    layer = randomize_(DenseHGTConv(8, 8, T, R, 2, dropout=0.5)).train()
    x, P, adj, E, mask = soft_graph('masked', B=5)
    inputs = [t.requires_grad_() for t in (x, P, adj, E)]
    wrt = inputs + list(layer.parameters())
    w = torch.randn(5, 5, 8)
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(0)  # same dropout masks; recompute must replay
        out = chunked(layer._forward, (*inputs, mask), size,
                      layer.parameters(), checkpoint=checkpoint)
        results.append((out, torch.autograd.grad((out * w).sum(), wrt)))
    (plain, plain_grads), (ckpt, ckpt_grads) = results
    assert (plain == 0).any()  # dropout is on
    assert torch.allclose(plain, ckpt)
    for a, b in zip(plain_grads, ckpt_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_checkpoint_keeps_the_caller_rng_stream():
    layer = DenseHGTConv(8, 8, T, R, 2, dropout=0.5).train()
    x, P, adj, E, mask = soft_graph('masked', B=4)
    x.requires_grad_()
    torch.manual_seed(1)
    chunked(layer._forward, (x, P, adj, E, mask), 2,
            layer.parameters()).sum().backward()
    after_backward = torch.rand(3)
    torch.manual_seed(1)
    with torch.no_grad():
        chunked(layer._forward, (x, P, adj, E, mask), 2, layer.parameters())
    assert torch.equal(after_backward, torch.rand(3))


@pytest.mark.parametrize('device,auto', [('cpu', 256), ('cuda', 4096),
                                         ('meta', 256)])
@pytest.mark.parametrize('B', [1, 300, 5000])
def test_auto_chunk_size_depends_on_the_device(device, auto, B):
    # no GPU needed: only the device type is read
    size = resolve_chunk_size('auto', B, torch.device(device))
    assert size == min(auto, B)
    assert resolve_chunk_size(7, B, torch.device(device)) == 7
    assert resolve_chunk_size(None, B, torch.device(device)) == B
