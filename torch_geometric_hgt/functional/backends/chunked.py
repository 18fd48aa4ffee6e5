"""The ``'memory_efficient'`` backend: the relation-aware edge phase as one
operator with a hand-written backward, over edges sorted by (target,
relation) and processed in chunks, so that memory outside the node-level
tensors is
bounded by the chunk size:

    qr_p    = mu_rh / sqrt(d) * q[t] A_rh^T     for each pair p = (t, r)
    score_e = qr[pair_e] . k_e,    k_e = k[src_e] (+ kt[trow_e])
    alpha   = softmax of score over edges with the same target (float32)
    agg[t]  = sum_r (sum_{e in (t, r)} alpha_e v_e) M_rh,  v_e likewise

per head. The relation transforms are applied per (target, relation) pair
that occurs in a chunk, never per edge and never to all ``N R`` pairs at
once; the scores and attention weights are the only edge-level tensors kept
(``[E, H]``, two-pass softmax). Registered as a ``torch.library`` custom op,
so ``torch.compile(fullgraph=True)`` treats it as one opaque node.
"""
import functools
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.functional.backends.edge_op import chunk_ranges
from torch_geometric_hgt.functional.linear import type_order
from torch_geometric_hgt.functional.plan import PairPlan
from torch_geometric_hgt.functional.softmax import (
    accumulation_dtype, segment_softmax, segment_softmax_backward)


def _gather(table: Tensor, idx: Tensor, tt: Tensor, trow: Tensor) -> Tensor:
    out = table.index_select(0, idx)
    if tt.numel():
        out = out + tt.index_select(0, trow)
    return out.to(accumulation_dtype(out))


class _Chunk:
    """Edges ``[a, b)`` of the sorted edge list and the (target, relation)
    pairs they touch, the pairs ordered by relation so that each relation's
    transform is one batched product on a contiguous slice."""
    def __init__(self, key: Tensor, src: Tensor, trow: Tensor, a: int,
                 b: int, R: int):
        self.src, self.trow = src[a:b], trow[a:b] if trow.numel() else trow
        pairs, inv = torch.unique_consecutive(key[a:b], return_inverse=True)
        rel = pairs % R
        order, rank, self.sizes = type_order(rel, R)
        self.pair = rank.index_select(0, inv)  # edge -> pair
        self.rel = rel.index_select(0, order)
        self.node = torch.div(pairs.index_select(0, order), R,
                              rounding_mode='floor')

    def rel_mm(self, x: Tensor, w: Tensor) -> Tensor:
        """``x[p, h] @ w[rel_p, h]``: ``x [P, H, d]``, ``w [R, H, d, e]``."""
        parts = [torch.einsum('phd,hde->phe', xr, w[r])
                 for r, xr in enumerate(x.split(self.sizes)) if xr.numel()]
        return torch.cat(parts) if parts else x.new_zeros(
            0, w.size(1), w.size(3))

    def rel_outer(self, a: Tensor, b: Tensor, R: int) -> Tensor:
        """``sum_{p: rel_p = r} a[p, h]^T b[p, h]`` per relation:
        ``[R, H, d, e]``."""
        out = a.new_zeros(R, a.size(1), a.size(2), b.size(2))
        for r, (ar, br) in enumerate(zip(a.split(self.sizes),
                                         b.split(self.sizes))):
            if ar.numel():
                out[r] = torch.einsum('phd,phe->hde', ar, br)
        return out

    def folded_query(self, q: Tensor, att_t: Tensor, scale: Tensor
                     ) -> Tuple[Tensor, Tensor, Tensor]:
        """``(q_p, q_p A^T, scale_p)`` for the chunk's pairs."""
        q_p = q.index_select(0, self.node)
        return q_p, self.rel_mm(q_p, att_t), scale.index_select(0, self.rel)


def _pair_chunks(key: Tensor, src: Tensor, trow: Tensor, chunk: int,
                 R: int):
    for a, b in chunk_ranges(key.numel(), chunk):
        yield a, b, _Chunk(key, src, trow, a, b, R)


def _exact(fn):
    """Runs ``fn`` with autocast off: the operator picks its own
    (float32) accumulation and must not be downcast inside."""
    @functools.wraps(fn)
    def wrapper(*args):
        with torch.autocast(args[1].device.type, enabled=False):
            return fn(*args)
    return wrapper


@torch.library.custom_op('torch_geometric_hgt::relation_attention_fwd',
                         mutates_args=())
@_exact
def relation_attention_fwd(q: Tensor, k: Tensor, v: Tensor, kt: Tensor,
                           vt: Tensor, att: Tensor, pri: Tensor, msg: Tensor,
                           src: Tensor, key: Tensor, trow: Tensor,
                           num_nodes: int, chunk: int
                           ) -> Tuple[Tensor, Tensor]:
    E, (R, H, d, _) = src.numel(), att.shape
    acc = accumulation_dtype(k)
    q, k, v, kt, vt = (t.to(acc) for t in (q, k, v, kt, vt))
    att_t = att.to(acc).transpose(-1, -2)
    msg = msg.to(acc)
    scale = pri.to(acc) / d ** 0.5
    dst = torch.div(key, R, rounding_mode='floor')
    score = torch.empty(E, H, device=k.device, dtype=acc)
    for a, b, c in _pair_chunks(key, src, trow, chunk, R):
        _, qa, s = c.folded_query(q, att_t, scale)
        k_e = _gather(k, c.src, kt, c.trow)
        score[a:b] = ((qa * s.unsqueeze(-1)).index_select(0, c.pair)
                      * k_e).sum(-1)
    alpha = segment_softmax(score, dst, num_nodes)
    agg = torch.zeros(num_nodes, H, d, device=k.device, dtype=acc)
    for a, b, c in _pair_chunks(key, src, trow, chunk, R):
        v_e = _gather(v, c.src, vt, c.trow) * alpha[a:b].unsqueeze(-1)
        u = torch.zeros(len(c.rel), H, d, device=k.device, dtype=acc)
        agg.index_add_(0, c.node, c.rel_mm(u.index_add_(0, c.pair, v_e),
                                           msg))
    return agg, alpha


@relation_attention_fwd.register_fake
def _(q, k, v, kt, vt, att, pri, msg, src, key, trow, num_nodes, chunk):
    acc = accumulation_dtype(k)
    return (k.new_empty((num_nodes, ) + tuple(k.shape[1:]), dtype=acc),
            k.new_empty((src.size(0), k.size(1)), dtype=acc))


@torch.library.custom_op('torch_geometric_hgt::relation_attention_bwd',
                         mutates_args=())
@_exact
def relation_attention_bwd(d_agg: Tensor, alpha: Tensor, q: Tensor,
                           k: Tensor, v: Tensor, kt: Tensor, vt: Tensor,
                           att: Tensor, pri: Tensor, msg: Tensor, src: Tensor,
                           key: Tensor, trow: Tensor, num_nodes: int,
                           chunk: int) -> List[Tensor]:
    E, (R, H, d, _) = src.numel(), att.shape
    acc = accumulation_dtype(k)
    d_agg = d_agg.to(acc)
    q, k, v, kt, vt = (t.to(acc) for t in (q, k, v, kt, vt))
    att_a, msg_a = att.to(acc), msg.to(acc)
    att_t, msg_t = att_a.transpose(-1, -2), msg_a.transpose(-1, -2)
    scale = pri.to(acc) / d ** 0.5
    dst = torch.div(key, R, rounding_mode='floor')
    zeros = dict(device=k.device, dtype=acc)
    d_q, d_k, d_v = (torch.zeros(t.shape, **zeros) for t in (q, k, v))
    d_kt, d_vt = (torch.zeros(t.shape, **zeros) for t in (kt, vt))
    d_att = torch.zeros(att.shape, **zeros)
    d_msg = torch.zeros(msg.shape, **zeros)
    d_scale = torch.zeros(R, H, **zeros)
    d_alpha = torch.empty(E, H, **zeros)
    for a, b, c in _pair_chunks(key, src, trow, chunk, R):
        g = d_agg.index_select(0, c.node)
        v_e = _gather(v, c.src, vt, c.trow)
        u = torch.zeros(len(c.rel), H, d, **zeros).index_add_(
            0, c.pair, v_e * alpha[a:b].unsqueeze(-1))
        d_msg += c.rel_outer(u, g, R)
        du_e = c.rel_mm(g, msg_t).index_select(0, c.pair)
        d_alpha[a:b] = (du_e * v_e).sum(-1)
        dv_e = du_e * alpha[a:b].unsqueeze(-1)
        d_v.index_add_(0, c.src, dv_e)
        if vt.numel():
            d_vt.index_add_(0, c.trow, dv_e)
    d_score = segment_softmax_backward(alpha, d_alpha, dst, num_nodes)
    for a, b, c in _pair_chunks(key, src, trow, chunk, R):
        q_p, qa, s = c.folded_query(q, att_t, scale)
        g = d_score[a:b].unsqueeze(-1)
        k_e = _gather(k, c.src, kt, c.trow)
        d_qr = torch.zeros(qa.shape, **zeros).index_add_(0, c.pair, g * k_e)
        dk_e = g * (qa * s.unsqueeze(-1)).index_select(0, c.pair)
        d_k.index_add_(0, c.src, dk_e)
        if kt.numel():
            d_kt.index_add_(0, c.trow, dk_e)
        d_scale.index_add_(0, c.rel, (d_qr * qa).sum(-1))
        d_qa = d_qr * s.unsqueeze(-1)
        d_q.index_add_(0, c.node, c.rel_mm(d_qa, att_a))
        d_att += c.rel_outer(d_qa, q_p, R)
    return [d_q.to(q.dtype), d_k.to(k.dtype), d_v.to(v.dtype),
            d_kt.to(kt.dtype), d_vt.to(vt.dtype), d_att.to(att.dtype),
            (d_scale / d ** 0.5).to(pri.dtype), d_msg.to(msg.dtype)]


@relation_attention_bwd.register_fake
def _(d_agg, alpha, q, k, v, kt, vt, att, pri, msg, src, key, trow,
      num_nodes, chunk):
    return [torch.empty_like(t) for t in (q, k, v, kt, vt, att, pri, msg)]


def _setup_context(ctx, inputs, output):
    q, k, v, kt, vt, att, pri, msg, src, key, trow, num_nodes, chunk = inputs
    ctx.save_for_backward(output[1], q, k, v, kt, vt, att, pri, msg, src,
                          key, trow)
    ctx.num_nodes, ctx.chunk = num_nodes, chunk


def _backward(ctx, d_agg, _d_alpha):
    grads = relation_attention_bwd(d_agg, *ctx.saved_tensors, ctx.num_nodes,
                                   ctx.chunk)
    return tuple(grads) + (None, ) * 5


relation_attention_fwd.register_autograd(_backward,
                                         setup_context=_setup_context)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, plan: PairPlan,
                      att: Tensor, pri: Tensor, msg: Tensor, chunk: int,
                      rte: Optional[Tuple[Tensor, Tensor]] = None
                      ) -> Tuple[Tensor, Tensor]:
    """``(agg [N, H, d], alpha [E, H])`` from ``q``, ``k``, ``v [N, H,
    d]``, the relation weights, a ``'dense'`` plan (its pair rows are the
    keys ``target * R + relation``) and ``chunk`` edges per chunk;
    accumulated in float32 or wider. See the module docstring."""
    H, d = q.shape[1:]
    if rte is None:
        kt = vt = k.new_empty((0, H, d))
        trow = plan.src.new_empty(0)
    else:
        kt, vt = rte[0].view(-1, 2, H, d).unbind(1)
        trow = rte[1].index_select(0, plan.perm)
    agg, alpha = relation_attention_fwd(q, k, v, kt, vt, att, pri, msg,
                                        plan.src, plan.pair, trow,
                                        plan.num_nodes, chunk)
    return agg, plan.unsort(alpha.t())
