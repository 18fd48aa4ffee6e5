r"""The typed update of every layer, on tensors:

.. math::
    y_t = \mathrm{Norm}_{\tau(t)}\big(g\, \mathrm{drop}(a_t) + (1 - g)
    x_t\big), \qquad g = \sigma(\mathrm{skip}_{\tau(t)})

for hard node types (:func:`hgt_update`, :math:`a_t = W^a_{\tau(t)}
\mathrm{gelu}(\mathrm{agg}_t) + b^a_{\tau(t)}`) and :math:`\sum_\tau
P_{t\tau}\, y_t(\tau)` for soft ones (:func:`hgt_update_soft`); the gate
only when ``in_dim == out_dim``, the norm only with ``use_norm``.
"""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


class UpdateWeights(NamedTuple):
    """The update's parameters besides the output map.

    Args:
        skip (Tensor, optional): Gate logits ``[T]`` (``[]`` for one type);
            :obj:`None` without gate (``in_dim != out_dim``).
        norm_weight, norm_bias (Tensor, optional): LayerNorm affine ``[T,
            F]`` (``[F]`` for one type); :obj:`None` without norm.
        eps (float): LayerNorm epsilon.
        dropout (float): Dropout probability (applied only in training).
    """
    skip: Optional[Tensor]
    norm_weight: Optional[Tensor]
    norm_bias: Optional[Tensor]
    eps: float
    dropout: float


def hgt_update(a: Tensor, x: Tensor, node_type: Optional[Tensor],
               weights: UpdateWeights, training: bool = False) -> Tensor:
    """The update of hard node types.

    Args:
        a (Tensor): The output map's result ``[N, F]``.
        x (Tensor): The layer's input ``[N, F_in]`` (read by the gate).
        node_type (Tensor, optional): Type of each row ``[N]``; :obj:`None`
            when every row has the one type ``weights`` hold.
        weights (UpdateWeights): Gate and norm parameters, dropout.
        training (bool, optional): Apply dropout. (default: :obj:`False`)
    """
    y = F.dropout(a, weights.dropout, training)

    def rows(w: Tensor) -> Tensor:
        # index_select, not w[node_type]: the latter's backward
        # accumulates rows in threads on CPU, in an order that varies
        # between runs
        return w if node_type is None else w.index_select(0, node_type)

    if weights.skip is not None:
        g = torch.sigmoid(rows(weights.skip))
        g = g if node_type is None else g.unsqueeze(-1)
        y = g * y + (1 - g) * x
    if weights.norm_weight is not None:
        D = y.size(-1)
        if node_type is None:
            return F.layer_norm(y, (D, ), weights.norm_weight,
                                weights.norm_bias, weights.eps)
        y = F.layer_norm(y, (D, ), eps=weights.eps)
        y = y * rows(weights.norm_weight) + rows(weights.norm_bias)
    return y


def hashed_keep(n: int, seed: int, threshold: int,
                device: torch.device) -> Tensor:
    """``n`` keep flags from splitmix64 of ``seed`` and each pair's index:
    entry ``2i`` keeps where the hash's low 32 bits reach ``threshold``,
    ``2i + 1`` where its high 32 bits do. The same bits as the C kernels'
    ``dropout_mask`` (``csrc/soft_update.c``), on any device."""
    # splitmix64's constants as signed 64-bit integers (int64 arithmetic
    # wraps as uint64's does); >> then a mask is the logical shift
    golden, mix1, mix2 = (c - 2**64 for c in (
        0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))

    def shift(z: Tensor, k: int) -> Tensor:
        return (z >> k) & ((1 << (64 - k)) - 1)

    i = torch.arange((n + 1) // 2, dtype=torch.long, device=device)
    seed = seed - 2**64 if seed >= 2**63 else seed
    z = i * golden + seed
    z = (z ^ shift(z, 30)) * mix1
    z = (z ^ shift(z, 27)) * mix2
    z = z ^ shift(z, 31)
    halves = torch.stack([z & 0xFFFFFFFF, shift(z, 32)], 1)
    return (halves >= threshold).view(-1)[:n]


def dropout_keep(shape, p: float, device: torch.device,
                 out: Optional[Tensor] = None) -> Tensor:
    """A bool keep mask of ``shape``, ``True`` with probability ``1 - p``
    (to 2^-32), from a hash of a seed drawn from torch's default generator
    (so ``torch.manual_seed`` fixes it) and each entry's index: the same
    mask on every device and with or without the C kernels (which draw it
    several times faster on CPU)."""
    from torch_geometric_hgt import native
    seed = int(torch.randint(2**63 - 1, ()))
    threshold = min(round(p * 2**32), 2**32)
    if torch.device(device).type == 'cpu' and native.is_available() and \
            (out is None or out.is_contiguous()):
        return native.dropout_mask(shape, seed, threshold, out)
    keep = hashed_keep(math.prod(shape), seed, threshold,
                       torch.device(device)).view(shape)
    return keep if out is None else out.copy_(keep)


def dropout_scale(p: float) -> float:
    """What kept entries are multiplied by."""
    return 1 / (1 - p)


def dropout_factor(keep: Tensor, p: float, dtype: torch.dtype) -> Tensor:
    """The factor a :func:`dropout_keep` mask multiplies by (the scale in
    ``dtype``'s precision, as the C kernels of the dense layer use it)."""
    return keep.to(dtype) * dropout_scale(p)


def soft_update_terms(h: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
                      keep_x: Optional[Tensor], keep: Optional[Tensor] = None,
                      p: float = 0.0) -> Tensor:
    """The gated update of every node type before the norm, ``[n, T,
    out]``: ``drop(h W_t + b_t) + (1 - g_t) x`` for rows ``h = gelu(agg)
    [n, out]`` and ``x [n, in]``, ``weight [out, T out]`` (gate folded in,
    see :meth:`~torch_geometric_hgt.HGTParameters.gated_a_weight`), ``bias
    [T out]``, ``keep_x [T]`` (``1 - g_t``; None without skip) and
    ``keep`` a :func:`dropout_keep` mask of probability ``p`` broadcasting
    to ``[n, T, out]`` (None: no dropout)."""
    D = weight.size(0)
    y = torch.addmm(bias, h, weight).view(h.size(0), bias.numel() // D, D)
    if keep is not None:
        y = y.mul_(dropout_factor(keep, p, y.dtype))
    if keep_x is not None:
        y = y.addcmul_(x.unsqueeze(1), keep_x.view(1, -1, 1).to(y.dtype))
    return y


def hgt_update_soft(agg: Tensor, x: Tensor, P: Tensor, weight: Tensor,
                    bias: Tensor, keep_x: Optional[Tensor],
                    weights: UpdateWeights, training: bool = False,
                    dropout_per_type: bool = True) -> Tensor:
    """``sum_t P[..., t] * update_t(agg, x)`` for soft node types:
    ``agg [..., out_dim]``, ``x [..., in_dim]``, ``P [..., T]``, the
    output map with the gate folded in (``weight [T, out, out]``, ``bias
    [T, out]``, ``keep_x [T]``, see
    :meth:`~torch_geometric_hgt.HGTParameters.gated_a_weight`; ``weights``
    gives the norm and dropout). In training, dropout draws one mask per
    type (torch's dropout), or with ``dropout_per_type=False`` one
    :func:`dropout_keep` mask shared by all types (6x fewer random draws;
    for one-hot types the same distribution)."""
    T, D, lead = weight.size(0), weight.size(1), agg.shape[:-1]
    p = weights.dropout
    h = F.gelu(agg).reshape(-1, agg.size(-1))
    x = x.reshape(h.size(0), -1)
    w, b = weight.flatten(0, 1).t(), bias.flatten()
    if dropout_per_type:
        y = F.dropout(soft_update_terms(h, x, w, b, None), p, training)
        if keep_x is not None:
            y = torch.addcmul(y, x.unsqueeze(1),
                              keep_x.view(1, -1, 1).to(y.dtype))
    else:
        keep = None
        if training and p > 0:
            keep = dropout_keep((h.size(0), 1, D), p, h.device)
        y = soft_update_terms(h, x, w, b, keep_x, keep, p)
    if weights.norm_weight is not None:
        y = torch.addcmul(weights.norm_bias,
                          F.layer_norm(y, (D, ), eps=weights.eps),
                          weights.norm_weight)
    # a product and a sum, not einsum: that becomes one tiny matmul
    # per node, with a copy each
    P = P.reshape(-1, T, 1).to(y.dtype)
    return (y * P).sum(-2).view(*lead, D)
