"""The whole sparse HGT layer over chunks of target nodes, with a
hand-written outer backward (:class:`MemoryEfficientHGTConv`, eager).

Nodes are sorted by type and edges by (target, relation), so a range of
targets owns one range of edges and every softmax lies inside one chunk.
Forward computes K and V of all nodes (head-major, float32), then per
chunk: the chunk's queries folded with the relation key transforms, the
edge operator (scores, softmax, per-pair sums), the message transform and
the update, written straight into the output. Autograd keeps only the
inputs, K, V and the ``[H, E]`` attention weights. Backward replays each
chunk (same RNG and autocast state) from the saved attention weights,
differentiates its node-level parts locally, runs the edge operator's
backward on the chunk's sources only, and accumulates the K and V
gradients, which reach ``x`` and the weights through one GEMM per type at
the end. Peak memory above the inputs: K, V, their gradients, the output,
``dx`` and one chunk's temporaries.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric_hgt.conv.edge_attention import (_acc, aggregate,
                                                     attention_backward,
                                                     edge_attention_fwd)
from torch_geometric_hgt.ops import (fold_relations_by_head,
                                     sum_relations_by_head, type_order,
                                     typed_linear_sorted)
from torch_geometric_hgt.params import HGTParameters
from torch_geometric_hgt.replay import ForwardState


class _Plan:
    """Index bookkeeping (no gradients): node order, sorted edges and the
    chunks ``(n0, n1, e0, e1, type sizes)`` in sorted node order."""
    def __init__(self, p: HGTParameters, node_type: Tensor,
                 edge_index: Tensor, edge_type: Tensor,
                 edge_time: Optional[Tensor], chunk: int):
        N, E, R = node_type.numel(), edge_type.numel(), p.num_relations
        self.perm_n, rank, self.sizes = type_order(node_type, p.num_types)
        self.node_type = node_type.index_select(0, self.perm_n)
        key = rank.index_select(0, edge_index[1]) * R + edge_type
        self.perm = torch.argsort(key)
        self.key = key.index_select(0, self.perm)
        self.src = rank.index_select(
            0, edge_index[0].index_select(0, self.perm))
        self.trow = self.src.new_empty(0)
        if p.use_RTE:
            self.trow = self.node_type.index_select(0, self.src) * \
                p.max_len + edge_time.index_select(0, self.perm)
        dev = node_type.device
        ptr = torch.searchsorted(self.key, torch.arange(N + 1, device=dev) * R)
        # a chunk ends every `chunk` nodes and before the target of every
        # `chunk`-th edge, so it holds whole targets and ~`chunk` edges
        starts = torch.cat([
            torch.arange(0, N, chunk, device=dev),
            torch.searchsorted(ptr, torch.arange(0, E, chunk, device=dev),
                               right=True) - 1,
            torch.tensor([N], device=dev)
        ]).unique()
        bounds, edges = starts.tolist(), ptr.index_select(0, starts).tolist()
        ends = torch.tensor(self.sizes).cumsum(0).tolist()
        self.type_bounds = list(zip([0] + ends[:-1], ends))
        self.chunks = [
            (n0, n1, e0, e1, [max(0, min(n1, b) - max(n0, a))
                              for a, b in self.type_bounds])
            for n0, n1, e0, e1 in zip(bounds[:-1], bounds[1:], edges[:-1],
                                      edges[1:])
        ]

    def edges(self, n0: int, e0: int, e1: int, R: int
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(src, dst, pair, trow)`` of edges ``[e0, e1)``, with targets
        and pairs numbered within the chunk that starts at node ``n0``."""
        pair = self.key[e0:e1] - n0 * R
        trow = self.trow[e0:e1] if self.trow.numel() else self.trow
        return (self.src[e0:e1], torch.div(pair, R, rounding_mode='floor'),
                pair, trow)


def _query(p: HGTParameters, x: Tensor, sizes: List[int], w: Tensor,
           b: Tensor, w_fold: Tensor) -> Tensor:
    """The chunk's folded queries ``[H, n R, d]``."""
    D = p.out_dim
    q = typed_linear_sorted(x, sizes, w[:, D:2 * D], b[:, D:2 * D])
    return fold_relations_by_head(q.view(-1, p.n_heads, p.d_k), w_fold)


def _update(p: HGTParameters, x: Tensor, node_type: Tensor, u: Tensor,
            sizes: List[int], msg: Tensor, w_a: Tensor, b_a: Tensor,
            skip: Tensor, norm: Sequence[Tensor]) -> Tensor:
    """The chunk's output from its per-pair sums ``u [H, n R, d]``."""
    agg = sum_relations_by_head(u, msg).reshape(x.size(0), p.out_dim)
    y = typed_linear_sorted(F.gelu(agg.to(x.dtype)), sizes, w_a, b_a)
    rows = (norm[0][node_type], norm[1][node_type]) if norm else None
    return p.gate_and_norm(y, x, skip[node_type], rows)


def _key_value_weight(w: Tensor, b: Tensor, D: int) -> Tuple[Tensor, Tensor]:
    return (torch.cat([w[:, :D], w[:, 2 * D:]], 1),
            torch.cat([b[:, :D], b[:, 2 * D:]], 1))


def _key_value(p: HGTParameters, plan: _Plan, x: Tensor, w: Tensor,
               b: Tensor) -> Tensor:
    """K and V of all nodes in sorted order, ``[2, H, N, d]`` (float32 or
    wider), one GEMM per type."""
    H, d = p.n_heads, p.d_k
    w_kv, b_kv = _key_value_weight(w, b, p.out_dim)
    kv = x.new_empty(2, H, x.size(0), d, dtype=_acc(x))
    for t, (a, z) in enumerate(plan.type_bounds):
        if z > a:
            x_t = x.index_select(0, plan.perm_n[a:z])
            kv[:, :, a:z] = F.linear(x_t, w_kv[t], b_kv[t]).view(
                z - a, 2, H, d).permute(1, 2, 0, 3)
    return kv


class _TargetChunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: HGTParameters, plan: _Plan, chunk: int,
                checkpoint: bool, x: Tensor, kt: Tensor, vt: Tensor,
                *weights: Tensor) -> Tuple[Tensor, Tensor]:
        w, b, w_fold, msg, w_a, b_a, skip, *norm = weights
        N, E, R, acc = x.size(0), plan.key.numel(), p.num_relations, _acc(x)
        ctx.p, ctx.plan, ctx.chunk = p, plan, chunk
        ctx.state = ForwardState(x.device)
        kv = _key_value(p, plan, x, w, b)
        alpha = x.new_empty(p.n_heads, E, dtype=acc)
        out = None
        for n0, n1, e0, e1, sizes in plan.chunks:
            rows = plan.perm_n[n0:n1]
            x_c = x.index_select(0, rows)
            qr = _query(p, x_c, sizes, w, b, w_fold)
            src, dst, pair, trow = plan.edges(n0, e0, e1, R)
            u, alpha[:, e0:e1] = edge_attention_fwd(
                qr.to(acc), kv[0], kv[1], kt, vt, src, dst, pair, trow,
                n1 - n0, chunk)
            y = _update(p, x_c, plan.node_type[n0:n1], u, sizes, msg, w_a,
                        b_a, skip, norm)
            if out is None:
                out = y.new_empty(N, y.size(1))
            out.index_copy_(0, rows, y)
        if out is None:
            out = x.new_empty(0, p.out_dim)
        # checkpoint: K and V are recomputed in backward instead of kept (a
        # fresh empty tensor: a view would keep their storage alive)
        ctx.checkpoint = checkpoint
        ctx.save_for_backward(x, kt, vt, kv.new_empty(0) if checkpoint else
                              kv, alpha, *weights)
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    @once_differentiable  # the local autograd below is first order only
    def backward(ctx, d_out: Tensor, _d_alpha: Tensor):
        p, plan = ctx.p, ctx.plan
        x, kt, vt, kv, alpha, *weights = ctx.saved_tensors
        x, kt, vt = x.detach(), kt.detach(), vt.detach()
        R, D, acc = p.num_relations, p.out_dim, _acc(x)
        leaves = [t.detach().requires_grad_() for t in weights]
        w, b, w_fold, msg, w_a, b_a, skip, *norm = leaves
        d_weights = [torch.zeros_like(t) for t in weights]
        dx = torch.zeros_like(x)
        d_kt, d_vt = torch.zeros_like(kt), torch.zeros_like(vt)
        d_kv = x.new_zeros(2, x.size(0), D, dtype=acc)
        with ctx.state.replay():
            if ctx.checkpoint:
                with torch.no_grad():
                    kv = _key_value(p, plan, x, *weights[:2])
            for n0, n1, e0, e1, sizes in plan.chunks:
                rows = plan.perm_n[n0:n1]
                x_c = x.index_select(0, rows).requires_grad_()
                qr = _query(p, x_c, sizes, w, b, w_fold)
                src, dst, pair, trow = plan.edges(n0, e0, e1, R)
                a_c = alpha[:, e0:e1]
                u = aggregate(kv[1], vt, src, trow, pair, qr.size(1), a_c)
                u.requires_grad_()
                y = _update(p, x_c, plan.node_type[n0:n1], u, sizes, msg,
                            w_a, b_a, skip, norm)
                # leaves: (w, b, w_fold) feed the query, the rest the update
                dx_c, du, *g = torch.autograd.grad(
                    y, [x_c, u, *leaves[3:]], d_out.index_select(0, rows),
                    allow_unused=True)
                # the edge operator on the chunk's distinct sources only
                order = torch.argsort(src, stable=True)
                uniq, counts = torch.unique_consecutive(
                    src.index_select(0, order), return_counts=True)
                offsets = F.pad(counts.cumsum(0), (1, 0))
                d_qr, d_k, d_v, g_kt, g_vt = attention_backward(
                    du.to(acc), a_c, qr.detach().to(acc), kv[0], kv[1], kt,
                    vt, src, dst, pair, trow, n1 - n0, ctx.chunk,
                    (order, offsets))
                # node-major rows: one long row per source and table adds
                # with far fewer cache misses than a row per head
                d_kv[0].index_add_(0, uniq, d_k.transpose(0, 1).reshape(
                    -1, D))
                d_kv[1].index_add_(0, uniq, d_v.transpose(0, 1).reshape(
                    -1, D))
                d_kt += g_kt
                d_vt += g_vt
                dx_q, *g_q = torch.autograd.grad(
                    qr, [x_c, *leaves[:3]], d_qr.to(qr.dtype),
                    allow_unused=True)
                if dx_c is not None:  # the skip gate reads x
                    dx_q = dx_q + dx_c
                dx.index_add_(0, rows, dx_q.to(dx.dtype))
                for d_w, gi in zip(d_weights, g_q + g):
                    if gi is not None:
                        d_w += gi
        # K and V: one GEMM per type, in float32
        w_kv, b_kv = _key_value_weight(*weights[:2], D)
        d_wkv, d_bkv = torch.zeros_like(w_kv), torch.zeros_like(b_kv)
        for t, (a, z) in enumerate(plan.type_bounds):
            if z > a:
                idx = plan.perm_n[a:z]
                g = torch.cat([d_kv[0, a:z], d_kv[1, a:z]], 1)
                x_t = x.index_select(0, idx).to(g.dtype)
                dx.index_add_(0, idx, (g @ w_kv[t].to(g.dtype)).to(dx.dtype))
                d_wkv[t] = g.t() @ x_t
                d_bkv[t] = g.sum(0)
        d_weights[0][:, :D] += d_wkv[:, :D]
        d_weights[0][:, 2 * D:] += d_wkv[:, D:]
        d_weights[1][:, :D] += d_bkv[:, :D]
        d_weights[1][:, 2 * D:] += d_bkv[:, D:]
        return (None, None, None, None, dx, d_kt, d_vt, *d_weights)


def target_chunked_forward(p: HGTParameters, x: Tensor, node_type: Tensor,
                           edge_index: Tensor, edge_type: Tensor,
                           edge_time: Optional[Tensor], chunk: int,
                           checkpoint: bool = False, attention: bool = True
                           ) -> Tuple[Tensor, Optional[Tensor]]:
    """HGT of layer ``p`` over chunks of about ``chunk`` edges (and at most
    ``chunk`` targets); returns the output and, if ``attention``, the
    attention weights ``[E, H]`` in input order. ``checkpoint``: recompute
    K and V in backward instead of keeping them."""
    plan = _Plan(p, node_type, edge_index, edge_type, edge_time, chunk)
    H, d = p.n_heads, p.d_k
    if p.use_RTE:
        kt, vt = p.rte_kv_table().to(_acc(x)).view(-1, 2, H, d).permute(
            1, 2, 0, 3)
    else:
        kt = vt = x.new_empty(H, 0, d, dtype=_acc(x))
    norm = p.norm_weight() or ()
    out, alpha = _TargetChunked.apply(p, plan, chunk, checkpoint, x,
                                      kt.contiguous(),
                                      vt.contiguous(), *p.kqv_weight(),
                                      p.query_fold_weight(), p.relation_msg,
                                      *p.a_weight(), p.skip, *norm)
    if not attention:
        return out, None
    att = torch.empty_like(alpha.t()).index_copy_(0, plan.perm, alpha.t())
    return out, att.to(out.dtype)
