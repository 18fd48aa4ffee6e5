"""The torch math of :class:`~torch_geometric_hgt.DenseHGTConv`'s
hand-written forward and backward, on one chunk of graphs: the weights'
layouts, the typed input, the per-graph attention and the soft update,
with their backwards. The C kernels of :mod:`torch_geometric_hgt.native`
stand in for parts of it on CPU (:mod:`~torch_geometric_hgt.dense.kernels`);
:mod:`~torch_geometric_hgt.dense.steps` picks which."""
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt.functional.linear import (relations_by_column,
                                                   relations_by_row)
from torch_geometric_hgt.functional.softmax import adjacency_softmax
from torch_geometric_hgt.functional.update import (dropout_factor,
                                                   soft_update_terms)


@dataclass(frozen=True)
class Sizes:
    in_dim: int
    out_dim: int
    num_node_types: int
    num_relations: int
    n_heads: int
    dropout: float  # 0 in eval mode
    eps: float

    @property
    def d(self) -> int:
        return self.out_dim // self.n_heads


class Weights(NamedTuple):
    """The layer's parameters in the layouts the products use (built with
    autograd from the parameters, so their gradients flow back)."""
    kqv: Tensor  # [T in + T, 3 out]: stacked W^T of every type, then biases
    query_fold: Tensor  # [H, d, R d]: mu / sqrt(d) A^T of every relation
    msg: Tensor  # [H, R d, d]: M of every relation
    out: Tensor  # [out, T out]: W_a^T of every type, gate folded in
    out_bias: Tensor  # [T out]
    keep_x: Optional[Tensor]  # [T]: 1 - sigmoid(skip); None without gate
    gamma: Optional[Tensor]  # [T, out]; None without norm
    beta: Optional[Tensor]


class Saved(NamedTuple):
    """What the backward of one chunk needs from its forward."""
    kqv: Tensor  # [n, 3 out]
    expo: Tensor  # [H, b, j, i]: alpha / adj (softmax weights before adj)
    mean: Optional[Tensor]  # [n, T, 1]: LayerNorm statistics
    rstd: Optional[Tensor]
    keep: Optional[Tensor]  # [n, 1, out] bool: dropout mask


def layer_weights(layer) -> Weights:
    w, b = layer.kqv_weight()
    kqv = torch.cat([w.transpose(1, 2).flatten(0, 1), b], 0)
    fold = relations_by_column(layer.query_fold_weight())
    msg = relations_by_row(layer.relation_msg)
    wa, ba, keep_x = layer.gated_a_weight()
    norm = layer.norm_weight()
    return Weights(kqv, fold, msg, wa.flatten(0, 1).t(), ba.flatten(),
                   keep_x, *(norm if norm is not None else (None, None)))


def layer_sizes(layer) -> Sizes:
    """The :class:`Sizes` of a :class:`~torch_geometric_hgt.DenseHGTConv`
    in its current mode (dropout 0 in eval mode)."""
    return Sizes(layer.in_dim, layer.out_dim, layer.num_node_types,
                 layer.num_relations, layer.n_heads,
                 layer.drop.p if layer.training else 0.0,
                 layer.norm_eps)


def typed_input(x: Tensor, P: Tensor) -> Tensor:
    """``[P_t x...]``: its product with the stacked weights plus ``P`` times
    the stacked biases is ``sum_t P_t (W_t x + b_t)``."""
    return (P.unsqueeze(-1) * x.unsqueeze(1)).flatten(1)


def queries(kqv: Tensor, s: Sizes) -> Tensor:
    """Q head-major ``[H, n, d]`` (a view of ``kqv``)."""
    return kqv.view(kqv.size(0), 3, s.n_heads, s.d)[:, 1].transpose(0, 1)


def heads(kqv: Tensor, H: int, d: int, b: int
          ) -> Tuple[Tensor, Tensor, Tensor]:
    """K and V per graph ``[H b, N, d]`` (copies), Q head-major
    ``[H, n, d]`` (a view)."""
    k, q, v = kqv.view(kqv.size(0), 3, H, d).permute(1, 2, 0, 3).unbind(0)
    return k.reshape(H * b, -1, d), q, v.reshape(H * b, -1, d)


def pair_products(k: Tensor, qa: Tensor, s: Sizes) -> Tensor:
    """The per-relation scores ``[H b, j, i R + r]`` (sources first, the
    layout of adj and E) from keys per graph ``k [H b, N, d]`` and the
    folded queries ``qa = q mu / sqrt(d) A_r^T`` ``[H, n, R d]``."""
    return torch.bmm(k, qa.view(k.size(0), -1, s.d).transpose(1, 2))


def aggregate(alpha: Tensor, E: Tensor, v: Tensor, w: Weights, b: int,
              s: Sizes) -> Tuple[Tensor, Tensor, Tensor]:
    """``agg_ih = sum_j alpha_h(j -> i) sum_r E_ji(r) v_jh M_rh`` (head-major)
    from values per graph ``v [H b, N, d]``, with the coefficients and
    per-relation sums it goes through."""
    H, R, d = s.n_heads, s.num_relations, s.d
    N = alpha.size(-1)
    coef = (alpha.unsqueeze(-1) * E).reshape(H * b, N, N * R)
    u = torch.bmm(coef.transpose(1, 2), v)  # [H b, N R, d]
    agg = torch.bmm(u.view(H, b * N, R * d), w.msg)  # [H, n, d]
    return agg, u, coef


def edge_weights(adj: Tensor, mask: Optional[Tensor]) -> Tensor:
    """``adj`` (or its gradient) with the pairs of padded nodes set to 0:
    selected, not multiplied, since a padded node's huge features can
    overflow its pairs' gradients to inf, and inf * 0 is NaN."""
    if mask is None:
        return adj
    return adj.masked_fill(~(mask.unsqueeze(-1) & mask.unsqueeze(-2)), 0.)


def attend(kqv: Tensor, a: Tensor, E: Tensor, w: Weights, s: Sizes,
           b: int) -> Tuple[Tensor, Tensor]:
    """The softmax weights before ``a`` ``[H, b, j, i]`` and ``agg [H, n,
    d]`` (head-major) of ``b`` graphs with edge weights ``a``: the
    products in ``kqv``'s dtype, the softmax in ``a``'s (float32 or
    wider)."""
    N = a.size(-1)
    k, q, v = heads(kqv, s.n_heads, s.d, b)
    pair = pair_products(k, torch.bmm(q, w.query_fold.to(q.dtype)), s)
    E = E.to(pair.dtype)
    score = (pair.view(s.n_heads, b, N, N, -1) * E).sum(-1)  # [H, b, j, i]
    expo = adjacency_softmax(score.to(a.dtype), a)
    alpha = (a * expo).to(pair.dtype)
    return expo, aggregate(alpha, E, v, w._replace(msg=w.msg.to(v.dtype)),
                           b, s)[0]


def updated(agg: Tensor, x: Tensor, w: Weights, keep: Optional[Tensor],
            s: Sizes) -> Tuple[Tensor, Tensor]:
    """``gelu(agg)`` and
    :func:`~torch_geometric_hgt.functional.update.soft_update_terms` ``[n,
    T, out]`` of a chunk's rows with dropout mask ``keep``."""
    h = F.gelu(agg)
    return h, soft_update_terms(h, x, w.out, w.out_bias, w.keep_x, keep,
                                s.dropout)


def update_forward(agg: Tensor, x: Tensor, P: Tensor,
                   keep: Optional[Tensor], w: Weights, s: Sizes
                   ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``sum_t P_t (gamma_t LN(y_t) + beta_t)`` ``[n, out]`` of the gated
    updates ``y`` of :func:`updated`, and the norm's mean and rstd."""
    _, y = updated(agg, x, w, keep, s)
    if w.gamma is None:
        return torch.bmm(P.unsqueeze(1), y).squeeze(1), None, None
    mean = y.mean(-1, keepdim=True)
    y.sub_(mean)
    rstd = torch.linalg.vector_norm(y, dim=-1, keepdim=True).square_() \
        .div_(s.out_dim).add_(s.eps).rsqrt_()
    # sum_t (P_t rstd_t) gamma_t (y_t - mean_t): one batched product
    out = torch.bmm((P.unsqueeze(-1) * rstd).transpose(1, 2),
                    y.mul_(w.gamma)).squeeze(1).addmm_(P, w.beta)
    return out, mean, rstd


def update_backward(g: Tensor, agg: Tensor, x: Tensor, P: Tensor,
                    saved: Saved, w: Weights, s: Sizes, need_dx: bool
                    ) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor],
                               List[Optional[Tensor]]]:
    """Backward of :func:`update_forward` for ``g = d out [n, D]``: the
    gradient ``[n, T D]`` of the output map (after dropout), ``gelu(agg)``,
    ``dP``, the skip's share of ``dx`` (if ``need_dx``) and the gradients
    of ``out_bias, keep_x, gamma, beta`` (fields 4-7 of :class:`Weights`).
    """
    n, T, D = g.size(0), s.num_node_types, s.out_dim
    h, y = updated(agg, x, w, saved.keep, s)
    keep = None if saved.keep is None else \
        dropout_factor(saved.keep, s.dropout, x.dtype)
    dP = torch.zeros_like(P)
    dgamma = dbeta = dkeep_x = dx = None
    if w.gamma is not None:
        yhat = torch.addcmul(-saved.mean * saved.rstd, y, saved.rstd, out=y)
        gy = yhat * g.unsqueeze(1)  # [n, T, D]
        dgamma = torch.bmm(P.t().unsqueeze(1), gy.transpose(0, 1)).squeeze(1)
        dbeta = P.t() @ g
        # LayerNorm backward with d yhat = P_t gamma_t g
        dz = torch.mul(g.unsqueeze(1), w.gamma, out=gy)
        dot = torch.linalg.vecdot(dz, yhat)
        dP += dot
        dP.addmm_(g, w.beta.t())
        dz.sub_((g @ w.gamma.t()).div_(D).unsqueeze(-1))
        dz.addcmul_(yhat, dot.div(-D).unsqueeze(-1))
        dz.mul_((P * saved.rstd.squeeze(-1)).unsqueeze(-1))
    else:
        dP += torch.linalg.vecdot(y, g.unsqueeze(1))
        dz = P.unsqueeze(-1) * g.unsqueeze(1)
    if w.keep_x is not None and need_dx:
        dx = torch.bmm(w.keep_x.expand(n, 1, T), dz).squeeze(1)
    if w.keep_x is not None:
        dkeep_x = torch.linalg.vecdot(dz, x.unsqueeze(1)).sum(0)
    if keep is not None:
        dz.mul_(keep)
    dz = dz.view(n, T * D)
    return dz, h, dP, dx, [dz.sum(0), dkeep_x, dgamma, dbeta]


def attention_backward(du: Tensor, k: Tensor, v: Tensor, q: Tensor,
                       coef: Tensor, alpha: Tensor, E: Tensor,
                       expo: Tensor, dkqv: Tensor, need: List[bool],
                       w: Weights, s: Sizes, b: int
                       ) -> Tuple[Tensor, Optional[Tensor],
                                  Optional[Tensor]]:
    """Backward of :func:`attend` after the message map for ``du [H, n,
    R d]`` (the gradient of :func:`aggregate`'s ``u``), with its
    ``coef``, keys and values per graph ``k, v [H b, N, d]``, queries ``q
    [H, n, d]`` and ``alpha = a expo``: writes the K and V parts of
    ``dkqv`` and returns the folded queries' gradient ``[H, n, R d]``,
    ``dE`` and ``d adj`` (before the mask) where ``need``."""
    H, R, d, N = s.n_heads, s.num_relations, s.d, alpha.size(-1)
    n = b * N
    du = du.view(H * b, N * R, d)
    dcoef = torch.bmm(v, du.transpose(1, 2)).view(H, b, N, N, R)
    dv = torch.bmm(coef, du)  # [H b, j, d]
    dalpha = (dcoef * E).sum(-1)
    dE = (dcoef * alpha.unsqueeze(-1)).sum(0) if need[3] else None
    del dcoef
    dalpha -= (alpha * dalpha).sum(-2, keepdim=True)
    dadj = (expo * dalpha).sum(0) if need[2] else None
    dscore = dalpha.mul_(alpha)
    qa = torch.bmm(q, w.query_fold)
    if dE is not None:  # the per-relation scores only serve dE
        pair = pair_products(k, qa, s)
        dE += (pair.view(H, b, N, N, R) * dscore.unsqueeze(-1)).sum(0)
    dpair = (dscore.unsqueeze(-1) * E).view(H * b, N, N * R)
    dk = torch.bmm(dpair, qa.view(H * b, N * R, d))
    for i, t in ((0, dk), (2, dv)):
        dkqv.view(n, 3, H, d)[:, i].copy_(t.view(H, n, d).transpose(0, 1))
    return (torch.bmm(dpair.transpose(1, 2), k).view(H, n, R * d), dE,
            dadj)


def transposed_weights(w: Weights, T: int) -> Tuple[Tensor, ...]:
    """The ``wt`` of :func:`chunk_backward`: the K/Q/V weights, their
    biases, the output weights, the folded query weights and the message
    weights transposed (made once per backward)."""
    return (w.kqv[:-T].t().contiguous(), w.kqv[-T:].t(),
            w.out.t().contiguous(),
            w.query_fold.transpose(1, 2).contiguous(),
            w.msg.transpose(1, 2).contiguous())


