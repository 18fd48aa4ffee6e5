r"""The ``'memory_efficient'`` backend: the pair-folded edge phase over
chunks of whole targets (:class:`~torch_geometric_hgt.functional.plan.
TargetChunks`), every softmax inside its chunk, recomputed chunk by chunk
in backward, so only the node-level inputs and the ``[H, E]`` attention
weights are kept. A ``torch.library`` custom op: ``torch.compile
(fullgraph=True)`` treats it as one opaque node (the plan needs the host).
"""
import functools
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.functional.backends.edge_op import (
    aggregate, attention_weights, key_backward, score_backward,
    value_backward)
from torch_geometric_hgt.functional.linear import (fold_pairs,
                                                   fold_pairs_backward,
                                                   sum_pairs,
                                                   sum_pairs_backward)
from torch_geometric_hgt.functional.plan import PairPlan, TargetChunks
from torch_geometric_hgt.functional.softmax import accumulation_dtype


def exact(fn):
    """Runs ``fn`` with autocast off: the operator accumulates in float32
    or wider and must not be downcast inside."""
    @functools.wraps(fn)
    def wrapper(*args):
        with torch.autocast(args[1].device.type, enabled=False):
            return fn(*args)
    return wrapper


def head_major(*ts: Tensor) -> List[Tensor]:
    """``[rows, H, d]`` -> contiguous ``[H, rows, d]`` in float32 or
    wider."""
    return [t.to(accumulation_dtype(t)).transpose(0, 1).contiguous()
            for t in ts]


@torch.library.custom_op('torch_geometric_hgt::chunked_attention_fwd',
                         mutates_args=())
@exact
def chunked_attention_fwd(q: Tensor, k: Tensor, v: Tensor, kt: Tensor,
                          vt: Tensor, w_q: Tensor, w_msg: Tensor, src: Tensor,
                          key: Tensor, trow: Tensor, num_nodes: int,
                          chunk: int) -> Tuple[Tensor, Tensor]:
    N, (R, H, d, _) = num_nodes, w_q.shape
    acc = accumulation_dtype(k)
    k, v, kt, vt = head_major(k, v, kt, vt)
    q, w_q, w_msg = q.to(acc), w_q.to(acc), w_msg.to(acc)
    plan = TargetChunks(key, src, N, R, chunk)
    agg = q.new_zeros(N, H, d)
    alpha = q.new_empty(H, key.numel())
    for n0, n1, e0, e1 in plan.bounds:
        src_c, dst_c, pair_c = plan.edges(n0, e0, e1)
        trow_c = trow[e0:e1] if trow.numel() else trow
        qr = fold_pairs(q[n0:n1].transpose(0, 1), w_q)
        a_c = attention_weights(qr, k, kt, src_c, dst_c, pair_c, trow_c,
                                n1 - n0, chunk)
        alpha[:, e0:e1] = a_c
        u = aggregate(v, vt, src_c, trow_c, pair_c, (n1 - n0) * R, a_c)
        agg[n0:n1] = sum_pairs(u, w_msg).transpose(0, 1)
    return agg, alpha


@chunked_attention_fwd.register_fake
def _(q, k, v, kt, vt, w_q, w_msg, src, key, trow, num_nodes, chunk):
    acc = accumulation_dtype(k)
    return (q.new_empty((num_nodes, ) + tuple(q.shape[1:]), dtype=acc),
            q.new_empty((q.size(1), src.size(0)), dtype=acc))


@torch.library.custom_op('torch_geometric_hgt::chunked_attention_bwd',
                         mutates_args=())
@exact
def chunked_attention_bwd(d_agg: Tensor, alpha: Tensor, q: Tensor,
                          k: Tensor, v: Tensor, kt: Tensor, vt: Tensor,
                          w_q: Tensor, w_msg: Tensor, src: Tensor,
                          key: Tensor, trow: Tensor, num_nodes: int,
                          chunk: int) -> List[Tensor]:
    N, R, acc = num_nodes, w_q.size(0), accumulation_dtype(k)
    kh, vh, kth, vth = head_major(k, v, kt, vt)
    q_a, w_q_a, w_msg_a = q.to(acc), w_q.to(acc), w_msg.to(acc)
    d_agg = d_agg.to(acc).transpose(0, 1)
    plan = TargetChunks(key, src, N, R, chunk)
    by_src = plan.source_order()
    d_q = torch.zeros_like(q_a)
    d_k, d_v = torch.zeros_like(kh), torch.zeros_like(vh)
    d_kt, d_vt = torch.zeros_like(kth), torch.zeros_like(vth)
    d_w_q, d_w_msg = torch.zeros_like(w_q_a), torch.zeros_like(w_msg_a)
    for n0, n1, e0, e1 in plan.bounds:
        n = n1 - n0
        src_c, dst_c, pair_c = plan.edges(n0, e0, e1)
        trow_c = trow[e0:e1] if trow.numel() else trow
        a_c = alpha[:, e0:e1]
        uniq, sources = plan.sources(src_c, by_src[e0:e1] - e0)
        u = aggregate(vh, vth, src_c, trow_c, pair_c, n * R, a_c)
        du = torch.empty_like(u)
        d_w_msg += sum_pairs_backward(d_agg[:, n0:n1], u, w_msg_a, du)
        d_score = score_backward(du, a_c, vh, vth, src_c, dst_c, pair_c,
                                 trow_c, n, chunk)
        g_v, g_vt = value_backward(du, a_c, vth, pair_c, trow_c, sources)
        d_v.index_add_(1, uniq, g_v)
        d_vt += g_vt
        q_c = q_a[n0:n1].transpose(0, 1)
        d_qr, g_k, g_kt = key_backward(d_score, fold_pairs(q_c, w_q_a), kh,
                                       kth, src_c, pair_c, trow_c, sources)
        d_k.index_add_(1, uniq, g_k)
        d_kt += g_kt
        d_w_q += fold_pairs_backward(d_qr, q_c, w_q_a,
                                     d_q[n0:n1].transpose(0, 1))
    grads = (d_q, d_k.transpose(0, 1), d_v.transpose(0, 1),
             d_kt.transpose(0, 1), d_vt.transpose(0, 1), d_w_q, d_w_msg)
    # contiguous, as the fake kernel promises whatever the inputs' strides
    return [g.to(t.dtype).contiguous() for g, t in
            zip(grads, (q, k, v, kt, vt, w_q, w_msg))]


@chunked_attention_bwd.register_fake
def _(d_agg, alpha, q, k, v, kt, vt, w_q, w_msg, src, key, trow, num_nodes,
      chunk):
    return [t.new_empty(t.shape) for t in (q, k, v, kt, vt, w_q, w_msg)]


def _setup_context(ctx, inputs, output):
    q, k, v, kt, vt, w_q, w_msg, src, key, trow, num_nodes, chunk = inputs
    ctx.save_for_backward(output[1], q, k, v, kt, vt, w_q, w_msg, src, key,
                          trow)
    ctx.num_nodes, ctx.chunk = num_nodes, chunk


def _backward(ctx, d_agg, _d_alpha):
    grads = chunked_attention_bwd(d_agg, *ctx.saved_tensors, ctx.num_nodes,
                                  ctx.chunk)
    return tuple(grads) + (None, ) * 5


chunked_attention_fwd.register_autograd(_backward,
                                        setup_context=_setup_context)


def chunked_attention(q: Tensor, k: Tensor, v: Tensor, plan: PairPlan,
                      w_q: Tensor, w_msg: Tensor, chunk: int,
                      rte: Optional[Tuple[Tensor, Tensor]] = None
                      ) -> Tuple[Tensor, Tensor]:
    """``(agg [N, H, d], alpha [E, H])`` from ``q``, ``k``, ``v [N, H,
    d]``, folded query weights ``w_q`` and ``w_msg [R, H, d, d]``, a
    ``'dense'`` plan (its pair rows are the keys ``target * R +
    relation``), ``chunk`` edges per chunk (and at most ``chunk`` targets)
    and the optional temporal table ``(table [rows, 2 H d], row [E])``;
    ``agg`` in float32 or wider. ``alpha`` carries no gradient."""
    H, d = q.shape[1:]
    if rte is None:
        kt = vt = k.new_empty((0, H, d))
        trow = plan.src.new_empty(0)
    else:
        kt, vt = rte[0].view(-1, 2, H, d).unbind(1)
        trow = rte[1].index_select(0, plan.perm)
    # contiguous operands: compiled graphs check the saved tensors'
    # strides against the traced ones
    agg, alpha = chunked_attention_fwd(
        *(t.contiguous() for t in (q, k, v, kt, vt, w_q, w_msg)), plan.src,
        plan.pair, trow, plan.num_nodes, chunk)
    return agg, plan.unsort(alpha.detach())
