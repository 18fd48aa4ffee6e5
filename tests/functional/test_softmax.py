"""The softmax of the sparse backends and its hand-written backward against
plain per-segment definitions."""
import pytest
import torch

from torch_geometric_hgt.functional.softmax import (
    segment_softmax, segment_softmax_backward)


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
    """The gradient through each segment is ``torch.softmax``'s, and
    gradcheck holds."""
    g = torch.Generator().manual_seed(1)
    index = torch.tensor([1, 1, 0, 1, 3, 3])  # segment 2: empty
    score = torch.randn(6, 2, dtype=torch.float64, generator=g,
                        requires_grad=True)
    upstream = torch.randn(6, 2, dtype=torch.float64, generator=g)
    (grad, ) = torch.autograd.grad(segment_softmax(score, index, 4),
                                   score, upstream)
    for seg in index.unique():
        rows = (index == seg).nonzero().view(-1)
        part = score.detach()[rows].requires_grad_()
        (want, ) = torch.autograd.grad(torch.softmax(part, 0), part,
                                       upstream[rows])
        torch.testing.assert_close(grad[rows], want)
    torch.autograd.gradcheck(lambda s: segment_softmax(s, index, 4),
                             (score, ))


@pytest.mark.parametrize('dim', [0, 1])
def test_segment_softmax_backward_is_autograds(dim):
    """The hand-written backward (what the edge operators use) equals
    autograd through :func:`segment_softmax`, empty segments included."""
    g = torch.Generator().manual_seed(2)
    index = torch.tensor([2, 0, 2, 2, 4, 0])  # segments 1, 3: empty
    score = torch.randn(6, 3, dtype=torch.float64, generator=g)
    upstream = torch.randn(6, 3, dtype=torch.float64, generator=g)
    if dim == 1:
        score, upstream = score.t().contiguous(), upstream.t().contiguous()
    score.requires_grad_()
    alpha = segment_softmax(score, index, 5, dim=dim)
    (want, ) = torch.autograd.grad(alpha, score, upstream)
    got = segment_softmax_backward(alpha.detach(), upstream, index, 5, dim)
    torch.testing.assert_close(got, want)
