"""The ``'memory_efficient'`` backend's whole-layer form (see
:class:`~torch_geometric_hgt.MemoryEfficientHGTConv`): the layer over
chunks of targets, a hand-written backward replaying them in two passes (V
side, then K side) so only one of K and V and their gradients exists.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric_hgt.functional.backends.edge_op import (
    aggregate, attention_weights, edge_attention_fwd, key_backward,
    score_backward, value_backward)
from torch_geometric_hgt.functional.linear import (fold_pairs, sum_pairs,
                                                   type_order,
                                                   typed_linear_sorted)
from torch_geometric_hgt.functional.plan import TargetChunks
from torch_geometric_hgt.functional.softmax import accumulation_dtype
from torch_geometric_hgt.functional.update import UpdateWeights, hgt_update
from torch_geometric_hgt.params import HGTParameters
from torch_geometric_hgt.replay import ForwardState


class LayerChunks(TargetChunks):
    """:class:`~torch_geometric_hgt.functional.plan.TargetChunks` over the
    nodes sorted by type, with the node order and each chunk's nodes per
    type (``chunks``: ``(n0, n1, e0, e1, type sizes)``)."""
    def __init__(self, p: HGTParameters, node_type: Tensor,
                 edge_index: Tensor, edge_type: Tensor,
                 edge_time: Optional[Tensor], chunk: int, keep_perm: bool):
        R = p.num_relations
        self.perm_n, rank, self.sizes = type_order(node_type, p.num_node_types)
        self.node_type = node_type.index_select(0, self.perm_n)
        key = rank.index_select(0, edge_index[1]) * R + edge_type
        perm = torch.argsort(key)
        # the edge order is only needed to return attention weights
        self.perm = perm if keep_perm else None
        src = rank.index_select(0, edge_index[0].index_select(0, perm))
        super().__init__(key.index_select(0, perm), src, node_type.numel(),
                         R, chunk)
        self.trow = src.new_empty(0)
        if p.use_RTE:
            self.trow = self.node_type.index_select(0, src) * p.max_len + \
                edge_time.index_select(0, perm)
        ends = torch.tensor(self.sizes).cumsum(0).tolist()
        self.type_bounds = list(zip([0] + ends[:-1], ends))
        self.chunks = [
            (n0, n1, e0, e1, [max(0, min(n1, b) - max(n0, a))
                              for a, b in self.type_bounds])
            for n0, n1, e0, e1 in self.bounds
        ]

    def chunk_edges(self, n0: int, e0: int, e1: int
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(src, dst, pair, trow)`` of edges ``[e0, e1)`` (see
        :meth:`edges`)."""
        trow = self.trow[e0:e1] if self.trow.numel() else self.trow
        return (*self.edges(n0, e0, e1), trow)


def _query(p: HGTParameters, x: Tensor, sizes: List[int], w: Tensor,
           b: Tensor, w_fold: Tensor) -> Tensor:
    """The chunk's folded queries ``[H, n R, d]``."""
    D = p.out_dim
    q = typed_linear_sorted(x, sizes, w[:, D:2 * D], b[:, D:2 * D])
    return fold_pairs(q.view(-1, p.n_heads, p.d_k).transpose(0, 1), w_fold)


def _update(p: HGTParameters, x: Tensor, node_type: Tensor, u: Tensor,
            sizes: List[int], msg: Tensor, w_a: Tensor, b_a: Tensor,
            skip: Tensor, norm: Sequence[Tensor]) -> Tensor:
    """The chunk's output from its per-pair sums ``u [H, n R, d]``."""
    agg = sum_pairs(u, msg).transpose(0, 1).reshape(x.size(0), p.out_dim)
    y = typed_linear_sorted(F.gelu(agg.to(x.dtype)), sizes, w_a, b_a)
    gate = skip if p.in_dim == p.out_dim else None
    weights = UpdateWeights(gate, *(norm or (None, None)),
                            p.norm_eps, p.drop.p)
    return hgt_update(y, x, node_type, weights, p.training)


def _project(p: HGTParameters, plan: LayerChunks, x: Tensor, w: Tensor,
             b: Tensor, parts: Sequence[int]) -> Tensor:
    """K (part 0) and/or V (part 2) of all nodes in sorted order,
    ``[len(parts), H, N, d]`` (float32 or wider), one GEMM per type."""
    H, d, D = p.n_heads, p.d_k, p.out_dim
    w = torch.cat([w[:, i * D:(i + 1) * D] for i in parts], 1)
    b = torch.cat([b[:, i * D:(i + 1) * D] for i in parts], 1)
    out = x.new_empty(len(parts), H, x.size(0), d,
                      dtype=accumulation_dtype(x))
    for t, (a, z) in enumerate(plan.type_bounds):
        if z > a:
            x_t = x.index_select(0, plan.perm_n[a:z])
            out[:, :, a:z] = F.linear(x_t, w[t], b[t]).view(
                z - a, len(parts), H, d).permute(1, 2, 0, 3)
    return out


def _project_backward(plan: LayerChunks, x: Tensor, g: Tensor, part: int,
                      w: Tensor, dx: Tensor, d_w: Tensor, d_b: Tensor):
    """Adds the gradients of :func:`_project` part ``part`` from ``g [N,
    out_dim]`` (sorted order): one GEMM per type, in ``g``'s dtype (float32
    or wider) even inside the replayed autocast."""
    D = g.size(1)
    cols = slice(part * D, (part + 1) * D)
    with torch.autocast(x.device.type, enabled=False):
        for t, (a, z) in enumerate(plan.type_bounds):
            if z > a:
                idx, g_t = plan.perm_n[a:z], g[a:z]
                x_t = x.index_select(0, idx).to(g.dtype)
                dx.index_add_(0, idx,
                              (g_t @ w[t, cols].to(g.dtype)).to(dx.dtype))
                d_w[t, cols] += (g_t.t() @ x_t).to(d_w.dtype)
                d_b[t, cols] += g_t.sum(0).to(d_b.dtype)


def _attention(p: HGTParameters, plan: LayerChunks, x: Tensor, kt: Tensor,
               w: Tensor, b: Tensor, w_fold: Tensor, chunk: int) -> Tensor:
    """The attention weights ``[H, E]`` again, chunk by chunk."""
    k = _project(p, plan, x, w, b, (0, ))[0]
    alpha = k.new_empty(p.n_heads, plan.key.numel())
    for n0, n1, e0, e1, sizes in plan.chunks:
        qr = _query(p, x.index_select(0, plan.perm_n[n0:n1]), sizes, w, b,
                    w_fold)
        src, dst, pair, trow = plan.chunk_edges(n0, e0, e1)
        alpha[:, e0:e1] = attention_weights(qr.to(k.dtype), k, kt, src, dst,
                                            pair, trow, n1 - n0, chunk)
    return alpha


def _add(grads: Sequence[Tensor], parts: Sequence[Optional[Tensor]]):
    for g, part in zip(grads, parts):
        if part is not None:
            g += part


class _TargetChunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: HGTParameters, plan: LayerChunks, chunk: int,
                checkpoint: bool, x: Tensor, kt: Tensor, vt: Tensor,
                *weights: Tensor) -> Tuple[Tensor, Tensor]:
        w, b, w_fold, msg, w_a, b_a, skip, *norm = weights
        N, E = x.size(0), plan.key.numel()
        acc = accumulation_dtype(x)
        ctx.p, ctx.plan, ctx.chunk = p, plan, chunk
        ctx.state = ForwardState(x.device)
        kv = _project(p, plan, x, w, b, (0, 2))
        alpha = x.new_empty(p.n_heads, E, dtype=acc)
        out = None
        for n0, n1, e0, e1, sizes in plan.chunks:
            rows = plan.perm_n[n0:n1]
            x_c = x.index_select(0, rows)
            qr = _query(p, x_c, sizes, w, b, w_fold)
            src, dst, pair, trow = plan.chunk_edges(n0, e0, e1)
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
        # K and V are recomputed in backward (one GEMM each); checkpoint:
        # the attention weights too
        ctx.checkpoint = checkpoint
        ctx.save_for_backward(x, kt, vt, *weights,
                              *(() if checkpoint else (alpha, )))
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    @once_differentiable  # the local autograd below is first order only
    def backward(ctx, d_out: Tensor, _d_alpha: Tensor):
        p, plan, chunk = ctx.p, ctx.plan, ctx.chunk
        x, kt, vt, *weights = (t.detach() for t in ctx.saved_tensors)
        alpha = None if ctx.checkpoint else weights.pop()
        R, D, acc = p.num_relations, p.out_dim, accumulation_dtype(x)
        leaves = [t.detach().requires_grad_() for t in weights]
        w, b, w_fold, msg, w_a, b_a, skip, *norm = leaves
        d_weights = [torch.zeros_like(t) for t in weights]
        dx = torch.zeros_like(x)
        d_kt, d_vt = torch.zeros_like(kt), torch.zeros_like(vt)
        with ctx.state.replay():
            if alpha is None:
                with torch.no_grad():
                    alpha = _attention(p, plan, x, kt, *weights[:3], chunk)
            by_src = plan.source_order()
            # d_score may overwrite alpha where alpha is not autograd's
            d_score = alpha if ctx.checkpoint else torch.empty_like(alpha)
            # two passes, so that only one of K, V and of their gradients
            # exists at a time: first the updates and the value side
            v = _project(p, plan, x, *weights[:2], (2, ))[0]
            d_v = x.new_zeros(x.size(0), D, dtype=acc)
            for n0, n1, e0, e1, sizes in plan.chunks:
                rows = plan.perm_n[n0:n1]
                x_c = x.index_select(0, rows).requires_grad_()
                src, dst, pair, trow = plan.chunk_edges(n0, e0, e1)
                a_c = alpha[:, e0:e1]
                u = aggregate(v, vt, src, trow, pair, (n1 - n0) * R, a_c)
                u.requires_grad_()
                y = _update(p, x_c, plan.node_type[n0:n1], u, sizes, msg,
                            w_a, b_a, skip, norm)
                dx_c, du, *g = torch.autograd.grad(
                    y, [x_c, u, *leaves[3:]], d_out.index_select(0, rows),
                    allow_unused=True)
                uniq, sources = plan.sources(src, by_src[e0:e1] - e0)
                du = du.to(acc)
                s_c = score_backward(du, a_c, v, vt, src, dst, pair, trow,
                                     n1 - n0, chunk)
                g_v, g_vt = value_backward(du, a_c, vt, pair, trow, sources)
                d_score[:, e0:e1] = s_c  # a_c may be its storage: last
                # node-major rows: one long row per source and table adds
                # with far fewer cache misses than a row per head
                d_v.index_add_(0, uniq, g_v.transpose(0, 1).reshape(-1, D))
                d_vt += g_vt
                if dx_c is not None:  # the skip gate reads x
                    dx.index_add_(0, rows, dx_c.to(dx.dtype))
                _add(d_weights[3:], g)
            _project_backward(plan, x, d_v, 2, weights[0], dx,
                              *d_weights[:2])
            del v, d_v
            # then the queries and the key side
            k = _project(p, plan, x, *weights[:2], (0, ))[0]
            d_k = x.new_zeros(x.size(0), D, dtype=acc)
            for n0, n1, e0, e1, sizes in plan.chunks:
                rows = plan.perm_n[n0:n1]
                x_c = x.index_select(0, rows).requires_grad_()
                qr = _query(p, x_c, sizes, w, b, w_fold)
                src, dst, pair, trow = plan.chunk_edges(n0, e0, e1)
                uniq, sources = plan.sources(src, by_src[e0:e1] - e0)
                d_qr, g_k, g_kt = key_backward(
                    d_score[:, e0:e1], qr.detach().to(acc), k, kt, src, pair,
                    trow, sources)
                d_k.index_add_(0, uniq, g_k.transpose(0, 1).reshape(-1, D))
                d_kt += g_kt
                dx_q, *g = torch.autograd.grad(
                    qr, [x_c, *leaves[:3]], d_qr.to(qr.dtype),
                    allow_unused=True)
                dx.index_add_(0, rows, dx_q.to(dx.dtype))
                _add(d_weights[:3], g)
            _project_backward(plan, x, d_k, 0, weights[0], dx,
                              *d_weights[:2])
        return (None, None, None, None, dx, d_kt, d_vt, *d_weights)


def target_chunked_forward(p: HGTParameters, x: Tensor, node_type: Tensor,
                           edge_index: Tensor, edge_type: Tensor,
                           edge_time: Optional[Tensor], chunk: int,
                           checkpoint: bool = False, attention: bool = True
                           ) -> Tuple[Tensor, Optional[Tensor]]:
    """HGT of layer ``p`` over chunks of about ``chunk`` edges (and at most
    ``chunk`` targets); returns the output and, if ``attention``, the
    attention weights ``[E, H]`` in input order. ``checkpoint``: keep
    only the inputs for backward, not the attention weights."""
    plan = LayerChunks(p, node_type, edge_index, edge_type, edge_time, chunk,
                 attention)
    H, d = p.n_heads, p.d_k
    if p.use_RTE:
        kt, vt = p.rte_kv_table().to(accumulation_dtype(x)).view(
            -1, 2, H, d).permute(1, 2, 0, 3)
    else:
        kt = vt = x.new_empty(H, 0, d, dtype=accumulation_dtype(x))
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
