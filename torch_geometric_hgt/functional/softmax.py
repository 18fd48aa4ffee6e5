"""The softmax of every backend, in float32 or wider, and its one
hand-written backward: over each target's in-edges (:func:`segment_softmax`)
or a soft adjacency's sources (:func:`adjacency_softmax`, as the C kernel).
"""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric_hgt.numerics import EXP_CAP


def accumulation_dtype(t: Tensor) -> torch.dtype:
    """Where sums and softmax run: float32 for half types, else ``t``'s
    dtype."""
    return torch.promote_types(t.dtype, torch.float32)


def segment_softmax(score: Tensor, index: Tensor, dim_size: int,
                    dim: int = 0,
                    out_dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""Softmax of ``score`` over the entries that share ``index`` along
    ``dim`` (the other dimensions are independent, e.g. heads):

    .. math::
        \alpha_e = \frac{\exp(s_e - m_{i_e})}{\sum_{e': i_{e'} = i_e}
        \exp(s_{e'} - m_{i_e})}, \qquad m_i = \max_{e: i_e = i} s_e

    in :func:`accumulation_dtype`, returned in ``out_dtype`` (default:
    ``score``'s). Differentiable by autograd; the hand-written backends use
    :func:`segment_softmax_backward`."""
    s = score.to(accumulation_dtype(score))
    shape = list(s.shape)
    shape[dim] = dim_size
    idx = index.view([-1 if i == dim else 1 for i in range(s.dim())])
    top = s.new_full(shape, float('-inf')).scatter_reduce_(
        dim, idx.expand_as(s), s.detach(), 'amax', include_self=True)
    alpha = torch.exp(s - top.index_select(dim, index))
    den = s.new_zeros(shape).index_add_(dim, index, alpha)
    return (alpha / den.index_select(dim, index)).to(out_dtype or
                                                     score.dtype)


def segment_softmax_backward(alpha: Tensor, d_alpha: Tensor, index: Tensor,
                             dim_size: int, dim: int = 0) -> Tensor:
    r"""The scores' gradient from the weights' one, :math:`\alpha_e
    (\partial\alpha_e - \sum_{e': i_{e'} = i_e} \alpha_{e'}
    \partial\alpha_{e'})`, for :func:`segment_softmax` along ``dim``."""
    shape = list(alpha.shape)
    shape[dim] = dim_size
    dot = alpha.new_zeros(shape).index_add_(dim, index, alpha * d_alpha)
    return alpha * (d_alpha - dot.index_select(dim, index))


def adjacency_softmax(score: Tensor, a: Tensor) -> Tensor:
    """Softmax weights of a soft graph's edges, before the edge weights:
    ``softmax_j`` of ``score [..., j, i]`` over the sources ``j`` with
    ``a > 0``, weighted by ``a``, i.e. ``alpha = a * result``. Targets
    without a positive ``a`` get 0 (and no gradient). Exponents are capped
    at :data:`~torch_geometric_hgt.numerics.EXP_CAP`. In place on fresh
    temporaries when ``score`` needs no gradient."""
    top = score.detach().masked_fill(a <= 0, float('-inf')).amax(
        -2, keepdim=True)
    top = top.masked_fill_(torch.isinf(top), 0.)
    if score.requires_grad or a.requires_grad:
        expo = torch.exp((score - top).clamp(max=EXP_CAP))
    else:
        expo = (score - top).clamp_(max=EXP_CAP).exp_()
    den = (a * expo).sum(-2, keepdim=True)
    return torch.where(den > 0, expo / den.clamp(min=1e-30),
                       torch.zeros_like(expo))
