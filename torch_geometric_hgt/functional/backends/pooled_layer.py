r"""The ``'ultrafast'`` backend's whole-layer form: projections,
:mod:`~torch_geometric_hgt.functional.backends.pair_fold`'s edge phase and
:func:`~torch_geometric_hgt.functional.hgt_update` as one Function with a
hand-written backward, its large tensors from the layer's
:class:`~torch_geometric_hgt.buffers.BufferPool` (from the second call on,
only the output and ``dx`` are fresh memory). Dropout draws its mask as
:func:`torch.nn.functional.dropout` does on CPU (one ``bernoulli_`` over
``[N, out]`` in sorted order), so a seed gives the autograd path's result.
"""
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric_hgt.buffers import BufferPool
from torch_geometric_hgt.functional.backends.edge_op import (
    bag_sums, by_rows, csr_offsets, gather_dots, score_backward, sorted_rows)
from torch_geometric_hgt.functional.dispatch import pair_layout
from torch_geometric_hgt.functional.linear import type_order
from torch_geometric_hgt.functional.plan import PairPlan
from torch_geometric_hgt.functional.softmax import segment_softmax

#: rows per block of the node-wise update (its temporaries stay small)
ROW_BLOCK = 8192


@dataclass
class Plan:
    """What :class:`LayerFunction` needs besides the weights: the node
    order, the edges by pair row, sizes and options."""
    perm: Optional[Tensor]  # [N]: sorts node_type (None: already sorted)
    rank: Optional[Tensor]  # [N]: inverse of perm
    sizes: List[int]  # nodes per type
    edges: PairPlan  # over the sorted nodes
    heads: int
    chunk: int
    dropout: float  # 0 when not training
    eps: float
    pool: BufferPool


def blocks(sizes: List[int]) -> List[Tuple[int, int, int]]:
    """``(type, start, end)`` row blocks of at most :data:`ROW_BLOCK` rows,
    each within one type."""
    out, start = [], 0
    for t, n in enumerate(sizes):
        for s in range(start, start + n, ROW_BLOCK):
            out.append((t, s, min(s + ROW_BLOCK, start + n)))
        start += n
    return out


class LayerFunction(torch.autograd.Function):
    """The layer (module docstring) on ``x [N, F_in]`` (float32 or
    float64), the fields of :class:`LayerWeights` and a :class:`Plan`:
    ``(out [N, F]`` in input node order, ``alpha [H, E]`` in the plan's
    edge order, no gradient)."""
    @staticmethod
    def forward(ctx, x: Tensor, w_kqv: Tensor, b_kqv: Tensor, w_q: Tensor,
                w_msg: Tensor, w_a: Tensor, b_a: Tensor,
                skip: Optional[Tensor], gamma: Optional[Tensor],
                beta: Optional[Tensor], plan: Plan
                ) -> Tuple[Tensor, Tensor]:
        pool, dt, dev = plan.pool, x.dtype, x.device
        N, F_in = x.shape
        H, P = plan.heads, plan.edges.num_pairs
        D = w_a.size(1)
        d = D // H
        sorted_ = plan.perm is None
        xs = x.contiguous() if sorted_ else torch.index_select(
            x, 0, plan.perm, out=pool.empty((N, F_in), dt, dev))
        kqv = pool.empty((N, 3 * D), dt, dev)
        for t, (xt, yt) in enumerate(zip(xs.split(plan.sizes),
                                         kqv.split(plan.sizes))):
            if xt.size(0):
                torch.addmm(b_kqv[t], xt, w_kqv[t].t(), out=yt)
        # head-major copies: the edge operator gathers contiguous rows
        k, q, v = (pool.empty((H, N, d), dt, dev).copy_(t.transpose(0, 1))
                   for t in kqv.view(N, 3, H, d).unbind(1))
        # folded queries, one row per (target, relation) pair
        qr = plan.edges.fold_queries(q, w_q, pool.empty((H, P, d), dt, dev))
        empty = kqv.new_empty(H, 0, d)
        no_rows = plan.edges.src.new_empty(0)
        score = gather_dots(qr, plan.edges.pair, k, plan.edges.src, empty,
                            no_rows, plan.chunk)
        alpha = segment_softmax(score, plan.edges.dst, N, dim=1)
        del score
        pair_offsets = csr_offsets(plan.edges.pair, P)
        u = bag_sums(v, plan.edges.src, pair_offsets, alpha,
                     pool.empty((H, P, d), dt, dev), plan.chunk)
        agg_h = plan.edges.sum_messages(u, w_msg,
                                         pool.empty((H, N, d), dt, dev))
        agg = pool.empty((N, D), dt, dev)
        agg.view(N, H, d).copy_(agg_h.transpose(0, 1))
        del agg_h
        a = pool.empty((N, D), dt, dev)  # W_a gelu(agg) + b_a
        noise = None
        if plan.dropout > 0:  # as F.dropout draws it on CPU
            noise = pool.empty((N, D), dt, dev).bernoulli_(1 - plan.dropout)
            noise.div_(1 - plan.dropout)
        zhat = pool.empty((N, D), dt, dev) if gamma is not None else None
        rstd = x.new_empty(N) if gamma is not None else None
        # the output is the caller's: from the pool only when reordered
        out_s = x.new_empty(N, D) if sorted_ else pool.empty((N, D), dt, dev)
        for t, s, e in blocks(plan.sizes):
            torch.addmm(b_a[t], F.gelu(agg[s:e]), w_a[t].t(), out=a[s:e])
            z = a[s:e] if noise is None else a[s:e] * noise[s:e]
            if skip is not None:
                g = torch.sigmoid(skip[t])
                z = g * z + (1 - g) * xs[s:e]
            if gamma is None:
                out_s[s:e] = z
                continue
            zh, _, rs = torch.native_layer_norm(z, (D, ), None, None,
                                                plan.eps)
            zhat[s:e], rstd[s:e] = zh, rs.view(-1)
            torch.addcmul(beta[t], zh, gamma[t], out=out_s[s:e])
        out = out_s if sorted_ else out_s.index_select(0, plan.rank)
        ctx.plan = plan
        ctx.save_for_backward(xs, k, q, v, qr, alpha, u, agg, a, noise, zhat,
                              rstd, pair_offsets, w_kqv, w_q, w_msg, w_a,
                              skip, gamma)
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, _d_alpha: Optional[Tensor]):
        plan, pool = ctx.plan, ctx.plan.pool
        (xs, k, q, v, qr, alpha, u, agg, a, noise, zhat, rstd, pair_offsets,
         w_kqv, w_q, w_msg, w_a, skip, gamma) = ctx.saved_tensors
        dt, dev = xs.dtype, xs.device
        N, F_in = xs.shape
        H, P = plan.heads, plan.edges.num_pairs
        D = w_a.size(1)
        d = D // H
        T = len(plan.sizes)
        need_x = ctx.needs_input_grad[0]
        sorted_ = plan.perm is None
        g_out = d_out.contiguous() if sorted_ else torch.index_select(
            d_out.contiguous(), 0, plan.perm,
            out=pool.empty((N, D), dt, dev))
        d_agg = pool.empty((N, D), dt, dev)
        dxs = None
        if need_x:  # the input's gradient is the caller's, as the output
            dxs = xs.new_zeros(N, F_in) if sorted_ else \
                pool.zeros((N, F_in), dt, dev)
        dw_a, db_a = torch.zeros_like(w_a), w_a.new_zeros(T, D)
        dskip = None if skip is None else torch.zeros_like(skip)
        dgamma = None if gamma is None else torch.zeros_like(gamma)
        dbeta = None if gamma is None else torch.zeros_like(gamma)
        for t, s, e in blocks(plan.sizes):
            dz = g_out[s:e]
            if gamma is not None:  # LayerNorm backward
                zh = zhat[s:e]
                dgamma[t] += (dz * zh).sum(0)
                dbeta[t] += dz.sum(0)
                dzh = dz * gamma[t]
                dz = rstd[s:e, None] * (
                    dzh - dzh.mean(-1, keepdim=True) -
                    zh * (dzh * zh).mean(-1, keepdim=True))
            a_d = a[s:e] if noise is None else a[s:e] * noise[s:e]
            if skip is not None:
                g = torch.sigmoid(skip[t])
                dskip[t] = dskip[t] + (dz * (a_d - xs[s:e])).sum() * \
                    g * (1 - g)
                if need_x:
                    dxs[s:e].add_(dz, alpha=float(1 - g))
                dz = dz * g
            if noise is not None:
                dz = dz * noise[s:e]
            h = F.gelu(agg[s:e])
            dw_a[t] += dz.t() @ h
            db_a[t] += dz.sum(0)
            d_agg[s:e] = torch.ops.aten.gelu_backward(dz @ w_a[t], agg[s:e])
        del g_out
        # message transform and per-pair sums
        d_agg_h = pool.empty((H, N, d), dt, dev)
        d_agg_h.copy_(d_agg.view(N, H, d).transpose(0, 1))
        du = pool.empty((H, P, d), dt, dev)
        d_w_msg = plan.edges.sum_messages_backward(d_agg_h, u, w_msg, du)
        del d_agg_h
        empty, no_rows = k.new_empty(H, 0, d), plan.edges.src.new_empty(0)
        d_score = score_backward(du, alpha, v, empty, plan.edges.src,
                                 plan.edges.dst, plan.edges.pair, no_rows, N,
                                 plan.chunk)
        sources = sorted_rows(plan.edges.src, N)
        d_kqv = pool.empty((N, 3, H, d), dt, dev)
        d_k = by_rows(qr, plan.edges.pair, sources, d_score,
                      pool.empty((H, N, d), dt, dev), plan.chunk)
        d_kqv[:, 0] = d_k.transpose(0, 1)
        del d_k
        d_v = by_rows(du, plan.edges.pair, sources, alpha,
                      pool.empty((H, N, d), dt, dev), plan.chunk)
        d_kqv[:, 2] = d_v.transpose(0, 1)
        del d_v, du
        d_qr = bag_sums(k, plan.edges.src, pair_offsets, d_score,
                        pool.empty((H, P, d), dt, dev), plan.chunk)
        d_q = pool.empty((H, N, d), dt, dev)
        d_w_q = plan.edges.fold_queries_backward(d_qr, q, w_q, d_q)
        d_kqv[:, 1] = d_q.transpose(0, 1)
        del d_qr, d_q
        d_kqv = d_kqv.view(N, 3 * D)
        dw_kqv, db_kqv = torch.zeros_like(w_kqv), w_kqv.new_zeros(T, 3 * D)
        for t, (xt, gt) in enumerate(zip(xs.split(plan.sizes),
                                         d_kqv.split(plan.sizes))):
            if xt.size(0) == 0:
                continue
            dw_kqv[t] = gt.t() @ xt
            db_kqv[t] = gt.sum(0)
        dx = None
        if need_x:
            for t, (dxt, gt) in enumerate(zip(dxs.split(plan.sizes),
                                              d_kqv.split(plan.sizes))):
                if gt.size(0):
                    dxt.addmm_(gt, w_kqv[t])
            dx = dxs if sorted_ else dxs.index_select(0, plan.rank)
        return (dx, dw_kqv, db_kqv, d_w_q, d_w_msg, dw_a, db_a, dskip,
                dgamma, dbeta, None)


class LayerWeights(NamedTuple):
    """:class:`LayerFunction`'s weights: K, Q, V ``[T, 3 F, F_in]``, ``[T,
    3 F]``; folded queries and ``relation_msg`` ``[R, H, d, d]``; output
    maps ``[T, F, F]``, ``[T, F]``; skip logits ``[T]`` (None without
    gate); LayerNorm affine ``[T, F]`` (None without norm)."""
    w_kqv: Tensor
    b_kqv: Tensor
    w_q: Tensor
    w_msg: Tensor
    w_a: Tensor
    b_a: Tensor
    skip: Optional[Tensor]
    gamma: Optional[Tensor]
    beta: Optional[Tensor]


def run_layer(x: Tensor, weights: LayerWeights, sizes: List[int],
              edges: PairPlan, heads: int, chunk: int, dropout: float,
              eps: float, pool: BufferPool,
              order: Optional[Tuple[Tensor, Tensor]] = None
              ) -> Tuple[Tensor, Tensor]:
    """:class:`LayerFunction` on ``x [N, F_in]``: ``sizes[t]`` nodes of
    type ``t``, consecutive unless ``order = (perm, rank)`` sorts them
    (``edges`` over the sorted nodes), ``dropout`` 0 outside training.
    Returns the output ``[N, F]`` in ``x``'s order and the attention ``[E,
    H]`` in input edge order."""
    perm, rank = order if order is not None else (None, None)
    out, alpha = LayerFunction.apply(
        x, *weights, Plan(perm, rank, sizes, edges, heads, chunk, dropout,
                          eps, pool))
    return out, edges.unsort(alpha).to(out.dtype)


def pooled_forward(p, x: Tensor, node_type: Tensor, edge_index: Tensor,
                   edge_type: Tensor, chunk: int, pool: BufferPool
                   ) -> Tuple[Tensor, Tensor]:
    """Layer ``p`` (an :class:`~torch_geometric_hgt.HGTParameters`) on a
    graph through :class:`LayerFunction`, ``chunk`` edges per chunk, large
    tensors from ``pool``. Returns the output and the attention ``[E, H]``
    in input edge order."""
    perm, rank, sizes = type_order(node_type, p.num_node_types)
    N, R, E = x.size(0), p.num_relations, edge_type.numel()
    edges = PairPlan.build(pair_layout(N, R, E, False), rank[edge_index],
                           edge_type, N, R)
    u = p.update_weights()  # the gate only where in_dim == out_dim
    weights = LayerWeights(*p.kqv_weight(), p.query_fold_weight(),
                           p.relation_msg, *p.a_weight(), u.skip,
                           u.norm_weight, u.norm_bias)
    return run_layer(x, weights, sizes, edges, p.n_heads, chunk,
                     u.dropout if p.training else 0.0, u.eps, pool,
                     (perm, rank))
