"""DenseHGTConv with a hand-written backward: each chunk of graphs keeps
K/Q/V, the softmax weights, the LayerNorm statistics and the dropout mask
(1.8 KB per node for 128-d, 4 heads, 8 nodes per graph, 6 types); the
backward recomputes only the output map and the small per-graph products.
Autograd through the same forward would keep ~15 KB per node, and
checkpointing recomputes every GEMM of the forward. On CPU the per-type
soft update (dropout, gate, LayerNorm, type mixture), the typed input's
backward and, for 8-node graphs, the per-graph attention with its
per-head products run in the C kernels of
:mod:`~torch_geometric_hgt.native` where they build, else in the
torch code here. The backward writes the input's gradient
into the K/Q/V rows it has finished with. On CPU, chunks run on worker
threads of one intra-op thread each
(:func:`~torch_geometric_hgt.dense.chunking.run_workers`)."""
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt import native
from torch_geometric_hgt.dense.chunking import (chunk_slices,
                                                resolve_chunk_size,
                                                run_workers)
from torch_geometric_hgt.ops import (EXP_CAP, dropout_factor,
                                     dropout_keep, dropout_scale)

#: cap on exponents of non-edges (adj = 0), which contribute 0 anyway


@dataclass(frozen=True)
class Sizes:
    in_dim: int
    out_dim: int
    num_types: int
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


def layer_weights(layer) -> Weights:
    H, d, R = layer.n_heads, layer.d_k, layer.num_relations
    w, b = layer.kqv_weight()
    kqv = torch.cat([w.transpose(1, 2).flatten(0, 1), b], 0)
    fold = layer.query_fold_weight().permute(1, 2, 0, 3).reshape(H, d, R * d)
    msg = layer.relation_msg.transpose(0, 1).reshape(H, R * d, d)
    wa, ba, keep_x = layer.gated_a_weight()
    norm = layer.norm_weight()
    return Weights(kqv, fold, msg, wa.flatten(0, 1).t(), ba.flatten(),
                   keep_x, *(norm if norm is not None else (None, None)))


def _typed_input(x: Tensor, P: Tensor) -> Tensor:
    """``[P_t x...]``: its product with the stacked weights plus ``P`` times
    the stacked biases is ``sum_t P_t (W_t x + b_t)``."""
    return (P.unsqueeze(-1) * x.unsqueeze(1)).flatten(1)


def _queries(kqv: Tensor, s: Sizes) -> Tensor:
    """Q head-major ``[H, n, d]`` (a view of ``kqv``)."""
    return kqv.view(kqv.size(0), 3, s.n_heads, s.d)[:, 1].transpose(0, 1)


def _heads(kqv: Tensor, H: int, d: int, b: int
           ) -> Tuple[Tensor, Tensor, Tensor]:
    """K and V per graph ``[H b, N, d]`` (copies), Q head-major
    ``[H, n, d]`` (a view)."""
    k, q, v = kqv.view(kqv.size(0), 3, H, d).permute(1, 2, 0, 3).unbind(0)
    return k.reshape(H * b, -1, d), q, v.reshape(H * b, -1, d)


def _pair_products(k: Tensor, qa: Tensor, s: Sizes) -> Tensor:
    """The per-relation scores ``[H b, j, i R + r]`` (sources first, the
    layout of adj and E) from keys per graph ``k [H b, N, d]`` and the
    folded queries ``qa = q mu / sqrt(d) A_r^T`` ``[H, n, R d]``."""
    return torch.bmm(k, qa.view(k.size(0), -1, s.d).transpose(1, 2))


def _aggregate(alpha: Tensor, E: Tensor, v: Tensor, w: Weights, b: int,
               s: Sizes) -> Tuple[Tensor, Tensor, Tensor]:
    """``agg_ih = sum_j alpha_h(j -> i) sum_r E_ji(r) v_jh M_rh`` (head-major)
    from values per graph ``v [H b, N, d]``, with the coefficients and
    per-relation sums it goes through."""
    H, R, d = s.n_heads, s.num_relations, s.d
    N = alpha.size(-1)
    coef = (alpha.unsqueeze(-1) * E).view(H * b, N, N * R)
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


def _attend(kqv: Tensor, a: Tensor, E: Tensor, w: Weights, s: Sizes,
            b: int) -> Tuple[Tensor, Tensor]:
    """The softmax weights before ``a`` ``[H, b, j, i]`` and ``agg [H, n,
    d]`` (head-major) of ``b`` graphs with edge weights ``a``."""
    N = a.size(-1)
    k, q, v = _heads(kqv, s.n_heads, s.d, b)
    pair = _pair_products(k, torch.bmm(q, w.query_fold), s)
    score = (pair.view(s.n_heads, b, N, N, -1) * E).sum(-1)  # [H, b, j, i]
    top = score.masked_fill(a <= 0, float('-inf')).amax(-2, keepdim=True)
    top.masked_fill_(torch.isinf(top), 0.)
    expo = (score - top).clamp_(max=EXP_CAP).exp_()
    den = (a * expo).sum(-2, keepdim=True)
    # targets without a positive adj: alpha = 0, no gradient
    expo = torch.where(den > 0, expo / den.clamp(min=1e-30), 0.)
    return expo, _aggregate(a * expo, E, v, w, b, s)[0]


def _updated(agg: Tensor, x: Tensor, w: Weights, keep: Optional[Tensor],
             s: Sizes) -> Tuple[Tensor, Tensor]:
    """``gelu(agg)`` and the gated update of every type ``[n, T, out]``
    before the norm: dropout(W_t h + b_t) g_t + (1 - g_t) x."""
    h = F.gelu(agg)
    y = torch.addmm(w.out_bias, h, w.out).view(agg.size(0), s.num_types,
                                               s.out_dim)
    if keep is not None:
        y.mul_(keep)
    if w.keep_x is not None:
        y.addcmul_(x.unsqueeze(1), w.keep_x.view(1, -1, 1))
    return h, y


def _update_forward(agg: Tensor, x: Tensor, P: Tensor,
                    keep: Optional[Tensor], w: Weights, s: Sizes
                    ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``sum_t P_t (gamma_t LN(y_t) + beta_t)`` ``[n, out]`` of the gated
    updates ``y`` of :func:`_updated`, and the norm's mean and rstd."""
    _, y = _updated(agg, x, w, None if keep is None else
                    dropout_factor(keep, s.dropout, x.dtype), s)
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


def _native_update(h: Tensor, x: Tensor, P: Tensor,
                   keep: Optional[Tensor], w: Weights, s: Sizes
                   ) -> native.Update:
    """The operands of the C kernels for ``h = gelu(agg)``: the output map
    without its bias (the kernels add it) and the rest of
    :func:`_updated`."""
    T = s.num_types
    Y = torch.mm(h, w.out).view(h.size(0), T, s.out_dim)
    return native.update(Y, w.out_bias.view(T, s.out_dim), keep,
                         dropout_scale(s.dropout), x, w.keep_x, P, w.gamma,
                         w.beta)


def _native_update_forward(agg: Tensor, x: Tensor, P: Tensor,
                           keep: Optional[Tensor], w: Weights, s: Sizes,
                           mean: Optional[Tensor], rstd: Optional[Tensor]
                           ) -> Tuple[Tensor, Optional[Tensor],
                                      Optional[Tensor]]:
    """:func:`_update_forward` through the C kernels (``mean, rstd`` are
    written into those if given)."""
    return native.update_forward(_native_update(F.gelu(agg), x, P, keep, w, s),
                                 s.eps, mean, rstd)


class Saved(NamedTuple):
    kqv: Tensor  # [n, 3 out]
    expo: Tensor  # [H, b, j, i]: alpha / adj (softmax weights before adj)
    mean: Optional[Tensor]  # [n, T, 1]: LayerNorm statistics
    rstd: Optional[Tensor]
    keep: Optional[Tensor]  # [n, 1, out] bool: dropout mask


def state_buffers(B: int, N: int, x: Tensor, s: Sizes, norm: bool
                  ) -> Saved:
    """What the backward needs, for all ``B`` graphs: allocated once, so
    that the chunks' transients do not fragment the heap around it."""
    n = B * N
    stats = [x.new_empty(n, s.num_types, 1) if norm else None
             for _ in range(2)]
    return Saved(x.new_empty(n, 3 * s.out_dim),
                 x.new_empty(s.n_heads, B, N, N), *stats,
                 torch.empty(n, 1, s.out_dim, dtype=torch.bool,
                             device=x.device) if s.dropout > 0 else None)


def dropout_masks(parts: List[slice], N: int, s: Sizes, x: Tensor,
                  into: Optional[Saved] = None) -> List[Optional[Tensor]]:
    """The dropout mask ``[b N, 1, out]`` of each chunk ``parts`` of ``x``
    (one per node, shared by all types; ``None`` without dropout), drawn
    in chunk order before any chunk runs, as workers would draw them in
    any order; written into the rows of ``into`` if given."""
    if s.dropout == 0:
        return [None] * len(parts)
    return [dropout_keep((x[part].size(0) * N, 1, s.out_dim), s.dropout,
                         x.device,
                         out=None if into is None else into.keep[
                             part.start * N:part.stop * N])
            for part in parts]


def _rows(state: Saved, part: slice, N: int) -> Saved:
    """The graphs ``part`` of :func:`state_buffers`."""
    nodes = slice(part.start * N, part.stop * N)
    return Saved(state.kqv[nodes], state.expo[:, part],
                 *[None if t is None else t[nodes]
                   for t in (state.mean, state.rstd, state.keep)])


def chunk_forward(x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                  mask: Optional[Tensor], w: Weights, s: Sizes,
                  keep: Optional[Tensor], into: Optional[Saved] = None
                  ) -> Tuple[Tensor, Saved]:
    """One chunk of graphs: ``x [b, N, in]`` ... -> ``[b, N, out]``, and
    what its backward needs (written ``into`` those buffers if given).
    ``keep``: the chunk's mask from :func:`dropout_masks` (``None``
    without dropout)."""
    b, N, _ = x.shape
    n, H, d, T = b * N, s.n_heads, s.d, s.num_types
    xf, Pf = x.reshape(n, -1), P.reshape(n, T)
    # (a contiguous [P_t x...] and the biases apart: 774-wide operands and
    # strided writes both run slow)
    kqv = torch.mm(_typed_input(xf, Pf), w.kqv[:-T],
                   out=None if into is None else into.kqv)
    kqv.addmm_(Pf, w.kqv[-T:])
    a = edge_weights(adj, mask)
    fast = native.usable(x)
    if fast and native.attention_usable(N, d):
        expo = x.new_empty(H, b, N, N) if into is None else into.expo
        agg = native.attention_forward(kqv, w.query_fold, w.msg, E, a, expo)
    else:
        expo, agg = _attend(kqv, a, E, w, s, b)
        agg = agg.transpose(0, 1).reshape(n, s.out_dim)
    if fast:
        out, mean, rstd = _native_update_forward(
            agg, xf, Pf, keep, w, s,
            *([None, None] if into is None else [into.mean, into.rstd]))
    else:
        out, mean, rstd = _update_forward(agg, xf, Pf, keep, w, s)
    out = out.view(b, N, -1)
    if mask is not None:
        out.mul_(mask.unsqueeze(-1))
    if into is None:
        return out, Saved(kqv, expo, mean, rstd, keep)
    for got, buf in ((expo, into.expo), (mean, into.mean),
                     (rstd, into.rstd)):
        if got is not None and got.data_ptr() != buf.data_ptr():
            buf.copy_(got)
    return out, into


def _update_backward(g: Tensor, agg: Tensor, x: Tensor, P: Tensor,
                     saved: Saved, w: Weights, s: Sizes, need_dx: bool
                     ) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor],
                                List[Optional[Tensor]]]:
    """Backward of :func:`_update_forward` for ``g = d out [n, D]``: the
    gradient ``[n, T D]`` of the output map (after dropout), ``gelu(agg)``,
    ``dP``, the skip's share of ``dx`` (if ``need_dx``) and the gradients
    of ``out_bias, keep_x, gamma, beta`` (fields 4-7 of :class:`Weights`).
    """
    n, T, D = g.size(0), s.num_types, s.out_dim
    keep = None if saved.keep is None else \
        dropout_factor(saved.keep, s.dropout, x.dtype)
    h, y = _updated(agg, x, w, keep, s)
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


def _native_update_backward(g: Tensor, agg: Tensor, x: Tensor, P: Tensor,
                            saved: Saved, w: Weights, s: Sizes,
                            need_dx: bool
                            ) -> Tuple[Tensor, Tensor, Tensor,
                                       Optional[Tensor],
                                       List[Optional[Tensor]]]:
    """:func:`_update_backward` through the C kernels."""
    h = F.gelu(agg)
    u = _native_update(h, x, P, saved.keep, w, s)
    dx = None if u.x is None else torch.zeros_like(x)
    dY, dP, dgamma, dbias, dkeep_x, dbeta = native.update_backward(
        g, u, saved.mean, saved.rstd, dx)
    return (dY.flatten(1), h, dP, dx if need_dx else None,
            [dbias.flatten(), dkeep_x, dgamma, dbeta])


def _attention_backward(du: Tensor, k: Tensor, v: Tensor, q: Tensor,
                        coef: Tensor, alpha: Tensor, E: Tensor,
                        expo: Tensor, dkqv: Tensor, need: List[bool],
                        w: Weights, s: Sizes, b: int
                        ) -> Tuple[Tensor, Optional[Tensor],
                                   Optional[Tensor]]:
    """Backward of :func:`_attend` after the message map for ``du [H, n,
    R d]`` (the gradient of :func:`_aggregate`'s ``u``), with its
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
        pair = _pair_products(k, qa, s)
        dE += (pair.view(H, b, N, N, R) * dscore.unsqueeze(-1)).sum(0)
    dpair = (dscore.unsqueeze(-1) * E).view(H * b, N, N * R)
    dk = torch.bmm(dpair, qa.view(H * b, N * R, d))
    for i, t in ((0, dk), (2, dv)):
        dkqv.view(n, 3, H, d)[:, i].copy_(t.view(H, n, d).transpose(0, 1))
    return (torch.bmm(dpair.transpose(1, 2), k).view(H, n, R * d), dE,
            dadj)


def chunk_backward(g: Tensor, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                   mask: Optional[Tensor], w: Weights, s: Sizes,
                   saved: Saved, need: List[bool], wt: Tuple[Tensor, ...]
                   ) -> Tuple[List[Optional[Tensor]], List[Tensor]]:
    """Gradients of one chunk: of ``x, P, adj, E`` (where ``need``) and of
    every weight in ``w`` (``None`` where ``w`` has none; indexed as the
    fields of :class:`Weights`). ``wt``: :func:`transposed_weights`."""
    b, N, _ = x.shape
    n, H, d, T, R = b * N, s.n_heads, s.d, s.num_types, s.num_relations
    D = s.out_dim
    xf, Pf = x.reshape(n, -1), P.reshape(n, T)
    g = g.reshape(n, D)
    if mask is not None:
        g = g * mask.reshape(n, 1)
    dw: List[Optional[Tensor]] = [None] * len(w)
    a = edge_weights(adj, mask)
    fast = native.usable(x)
    kernels = fast and native.attention_usable(N, d)
    if kernels:
        agg = native.attention_forward(saved.kqv, w.query_fold, w.msg, E, a,
                                       saved.expo, recompute=True)
    else:
        k, _, v = _heads(saved.kqv, H, d, b)
        alpha = a * saved.expo
        agg, u, coef = _aggregate(alpha, E, v, w, b, s)
        agg = agg.transpose(0, 1).reshape(n, D)
    update = _native_update_backward if fast else _update_backward
    dz, h, dP, dx, dw[4:8] = update(g, agg, xf, Pf, saved, w, s, need[0])
    # (dz^T h, transposed: MKL runs it 15-20% faster than h^T dz here)
    dw[3] = torch.mm(dz.t(), h).t()
    dagg = torch.ops.aten.gelu_backward(dz @ wt[2], agg)
    del dz, h

    # attention
    if kernels:
        dkqv, dw[1], dw[2], dE, dadj = native.attention_backward(
            saved.kqv, w.query_fold, wt[3], wt[4], E, a, saved.expo, dagg,
            need[3], need[2])
    else:
        dagg = dagg.view(n, H, d).transpose(0, 1)  # [H, n, d]
        dw[2] = torch.bmm(u.view(H, n, R * d).transpose(1, 2), dagg)
        du = torch.bmm(dagg, w.msg.transpose(1, 2))  # [H, n, R d]
        del u
        dkqv = torch.empty_like(saved.kqv)
        q = _queries(saved.kqv, s)
        dqa, dE, dadj = _attention_backward(du, k, v, q, coef, alpha, E,
                                            saved.expo, dkqv, need, w, s, b)
        del coef, du
        dw[1] = torch.bmm(q.transpose(1, 2), dqa)
        dq = torch.bmm(dqa, w.query_fold.transpose(1, 2))
        dkqv.view(n, 3, H, d)[:, 1].copy_(dq.transpose(0, 1))
        del dqa, dq
    if dadj is not None and mask is not None:
        dadj = edge_weights(dadj, mask)

    # typed input projection
    dw[0] = dkqv.new_empty(w.kqv.shape)
    torch.mm(_typed_input(xf, Pf).t(), dkqv, out=dw[0][:-T])
    dzv = torch.mm(dkqv, wt[0]).view(n, T, -1)
    if fast:
        if need[0] and dx is None:
            dx = torch.zeros_like(xf)
        dw[0][-T:] = native.typed_backward(dzv, xf, Pf, dkqv, w.kqv[-T:], dP,
                                           dx)
    else:
        torch.mm(Pf.t(), dkqv, out=dw[0][-T:])
        if need[0]:
            dxk = torch.bmm(Pf.unsqueeze(1), dzv).squeeze(1)
            dx = dxk if dx is None else dx.add_(dxk)
        dP += torch.linalg.vecdot(dzv, xf.unsqueeze(1))
        dP.addmm_(dkqv, wt[1])
    return [None if dx is None else dx.view(b, N, -1), dP.view(b, N, T),
            dadj, dE], dw


def transposed_weights(w: Weights, T: int) -> Tuple[Tensor, ...]:
    """The ``wt`` of :func:`chunk_backward`: the K/Q/V weights, their
    biases, the output weights, the folded query weights and the message
    weights transposed (made once per backward)."""
    return (w.kqv[:-T].t().contiguous(), w.kqv[-T:].t(),
            w.out.t().contiguous(),
            w.query_fold.transpose(1, 2).contiguous(),
            w.msg.transpose(1, 2).contiguous())


def _x_grad_buffer(state: Saved, x: Tensor) -> Tensor:
    """Where the backward writes the gradient of ``x [B, N, in]``: the
    first ``in`` columns of the K/Q/V rows of :func:`state_buffers`, each
    chunk's once its backward is done with them (a strided view). The
    layer's largest buffer is reused rather than a second one allocated
    while both layers' states are still held."""
    B, N, F = x.shape
    if F > state.kqv.size(1):
        return torch.empty_like(x)
    return state.kqv.view(B, N, state.kqv.size(1))[..., :F]


def _forward_chunks(x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                    mask: Optional[Tensor], w: Weights, s: Sizes, size: int,
                    into: Optional[Saved] = None) -> Tensor:
    """:func:`chunk_forward` over chunks of ``size`` graphs on the workers
    of :func:`~torch_geometric_hgt.dense.chunking.run_workers`, keeping
    what the backward needs ``into`` :func:`state_buffers` if given."""
    B, N = x.shape[:2]
    out = x.new_empty(B, N, s.out_dim)
    parts = chunk_slices(B, size)

    def work(chunks: List[Tuple[slice, Optional[Tensor]]]) -> None:
        for part, keep in chunks:
            out[part] = chunk_forward(
                x[part], P[part], adj[part], E[part],
                None if mask is None else mask[part], w, s, keep,
                None if into is None else _rows(into, part, N))[0]

    run_workers(list(zip(parts, dropout_masks(parts, N, s, x, into))), work,
                x.device)
    return out


class DenseLayerFunction(torch.autograd.Function):
    """All chunks of one layer; forward fills :func:`state_buffers`,
    backward walks the chunks once and then frees them."""
    @staticmethod
    def forward(ctx, s: Sizes, size: int, x: Tensor, P: Tensor, adj: Tensor,
                E: Tensor, mask: Optional[Tensor], *w: Optional[Tensor]
                ) -> Tensor:
        w = Weights(*w)
        B, N = x.shape[:2]
        ctx.state = state_buffers(B, N, x, s, w.gamma is not None)
        out = _forward_chunks(x, P, adj, E, mask, w, s, size, ctx.state)
        ctx.s, ctx.size = s, size
        ctx.save_for_backward(x, P, adj, E, mask, *w)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        if ctx.state is None:
            raise RuntimeError(
                "DenseHGTConv's backward frees what it kept, so the graph "
                "cannot be differentiated a second time (retain_graph); "
                "build it with checkpoint=True for that")
        x, P, adj, E, mask, *w = ctx.saved_tensors
        w = Weights(*w)
        need = list(ctx.needs_input_grad[2:6])
        inputs = [_x_grad_buffer(ctx.state, x) if need[0] else None,
                  *[torch.empty_like(t) if n else None
                    for t, n in zip((P, adj, E), need[1:])]]
        wt = transposed_weights(w, ctx.s.num_types)

        def work(parts: List[slice]) -> List[Optional[Tensor]]:
            dw = [None if t is None else torch.zeros_like(t) for t in w]
            for part in parts:
                got, got_w = chunk_backward(
                    grad[part], x[part], P[part], adj[part], E[part],
                    None if mask is None else mask[part], w, ctx.s,
                    _rows(ctx.state, part, x.size(1)), need, wt)
                for buf, gi in zip(inputs, got):
                    if buf is not None:
                        buf[part] = gi
                for acc, gi in zip(dw, got_w):
                    if acc is not None:
                        acc += gi
            return dw

        shares = run_workers(chunk_slices(x.size(0), ctx.size), work,
                             x.device)
        ctx.state = None
        dw = [None if t is None else sum(share[i] for share in shares)
              for i, t in enumerate(shares[0])]
        return (None, None, *inputs, None, *dw)


def supported(layer, x: Tensor) -> bool:
    """Whether :func:`dense_layer` runs ``layer`` on ``x``: float32 or
    float64, outside autocast and eager (the hand-written backward keeps no
    float32 accumulators for lower precisions); otherwise the layer
    differentiates its plain forward with autograd."""
    return (x.dtype in (torch.float32, torch.float64)
            and layer.relation_att.dtype == x.dtype
            and not torch.is_autocast_enabled(x.device.type)
            and not torch.compiler.is_compiling())


def dense_layer(layer, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                mask: Optional[Tensor], chunk_size) -> Tensor:
    """``layer``'s forward (a :class:`DenseHGTConv`) over chunks of
    ``chunk_size`` graphs, differentiable through
    :class:`DenseLayerFunction`."""
    s = Sizes(layer.in_dim, layer.out_dim, layer.num_types,
              layer.num_relations, layer.n_heads,
              layer.drop.p if layer.training else 0.0,
              layer.norms[0].eps if layer.use_norm else 1e-5)
    size = resolve_chunk_size(chunk_size, x.size(0), x.device)
    # (the per-graph products view them flat, the C kernels read them so)
    P, adj, E = (t.to(x.dtype).contiguous() for t in (P, adj, E))
    w = layer_weights(layer)
    if torch.is_grad_enabled() and any(
            t.requires_grad for t in (x, P, adj, E, *w) if t is not None):
        return DenseLayerFunction.apply(s, size, x, P, adj, E, mask, *w)
    with torch.no_grad():
        return _forward_chunks(x, P, adj, E, mask, w, s, size)
