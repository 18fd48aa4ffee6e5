"""The shared math of ops.py against plain per-segment definitions."""
import pytest
import torch

from torch_geometric_hgt.ops import segment_softmax


@pytest.mark.parametrize('dim', [0, 1])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64,
                                   torch.bfloat16])
def test_segment_softmax_is_softmax_per_segment(dim, dtype):
    g = torch.Generator().manual_seed(0)
    index = torch.tensor([3, 0, 3, 3, 5, 0, 5, 1])  # segments 2, 4: empty
    score = (torch.randn(8, 3, generator=g) * 30).to(dtype)
    if dim == 1:
        score = score.t().contiguous()
    alpha = segment_softmax(score, index, 6, dim=dim)
    assert alpha.dtype == dtype
    for seg in index.unique():
        rows = (index == seg).nonzero().view(-1)
        want = torch.softmax(score.double().index_select(dim, rows), dim)
        got = alpha.index_select(dim, rows).double()
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_segment_softmax_gradient_matches_softmax():
    index = torch.tensor([1, 1, 0, 1])
    score = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda s: segment_softmax(s, index, 2),
                             (score, ))
