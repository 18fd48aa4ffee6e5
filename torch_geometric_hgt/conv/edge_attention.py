"""The edge phase of the sparse layers as one operator with a hand-written
backward, processed in chunks of edges so that no ``[E, F]`` tensor lives
longer than one chunk:

    score_e = qr[pair_e] . k_e,   k_e = k[src_e] (+ kt[trow_e])
    alpha   = softmax of score over edges with the same dst (float32)
    u[p]    = sum_{e: pair_e = p} alpha_e v_e,   v_e = v[src_e] (+ vt[trow_e])

per head. ``qr`` holds the queries already folded with the relation key
transform per (target, relation) pair; ``kt``/``vt`` are the temporal
encoding tables (empty when unused). Registered as a ``torch.library``
custom op, so ``torch.compile(fullgraph=True)`` treats it as one opaque
node and never traces the chunk loop.
"""
from typing import Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.ops import segment_max


def _acc(t: Tensor) -> torch.dtype:
    """Accumulation dtype: float32 for half types, else the input's."""
    return torch.promote_types(t.dtype, torch.float32)


def _gather(table: Tensor, idx: Tensor, tt: Tensor, trow: Tensor) -> Tensor:
    out = table.index_select(0, idx)
    if tt.numel():
        out = out + tt.index_select(0, trow)
    return out.to(_acc(out))


def _chunks(E: int, chunk: int):
    chunk = max(int(chunk), 1)
    return [(s, min(s + chunk, E)) for s in range(0, E, chunk)]


@torch.library.custom_op('torch_geometric_hgt::edge_attention_fwd',
                         mutates_args=())
def edge_attention_fwd(qr: Tensor, k: Tensor, v: Tensor, kt: Tensor,
                       vt: Tensor, src: Tensor, dst: Tensor, pair: Tensor,
                       trow: Tensor, num_nodes: int,
                       chunk: int) -> Tuple[Tensor, Tensor]:
    E, H = src.numel(), k.size(1)
    acc = dict(device=k.device, dtype=_acc(k))
    score = torch.empty(E, H, **acc)
    for a, b in _chunks(E, chunk):
        k_e = _gather(k, src[a:b], kt, trow[a:b])
        score[a:b] = (qr.index_select(0, pair[a:b]).to(k_e) * k_e).sum(-1)
    top = segment_max(score, dst, num_nodes)
    alpha = torch.exp(score - top.index_select(0, dst))
    den = torch.zeros(num_nodes, H, **acc).index_add_(0, dst, alpha)
    alpha = alpha / den.index_select(0, dst)
    u = torch.zeros(qr.shape, **acc)
    for a, b in _chunks(E, chunk):
        v_e = _gather(v, src[a:b], vt, trow[a:b])
        u.index_add_(0, pair[a:b], v_e * alpha[a:b].unsqueeze(-1))
    return u.to(v.dtype), alpha


@edge_attention_fwd.register_fake
def _(qr, k, v, kt, vt, src, dst, pair, trow, num_nodes, chunk):
    return (qr.new_empty(qr.shape, dtype=v.dtype),
            k.new_empty((src.size(0), k.size(1)), dtype=_acc(k)))


@torch.library.custom_op('torch_geometric_hgt::edge_attention_bwd',
                         mutates_args=())
def edge_attention_bwd(du: Tensor, alpha: Tensor, qr: Tensor, k: Tensor,
                       v: Tensor, kt: Tensor, vt: Tensor, src: Tensor,
                       dst: Tensor, pair: Tensor, trow: Tensor,
                       num_nodes: int, chunk: int
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    E, H = src.numel(), k.size(1)
    f32 = dict(device=k.device, dtype=_acc(k))
    d_v = torch.zeros(v.shape, **f32)
    d_vt = torch.zeros(vt.shape, **f32)
    d_alpha = torch.empty(E, H, **f32)
    du = du.to(f32['dtype'])
    for a, b in _chunks(E, chunk):
        v_e = _gather(v, src[a:b], vt, trow[a:b])
        du_e = du.index_select(0, pair[a:b])
        d_alpha[a:b] = (du_e * v_e).sum(-1)
        dv_e = du_e * alpha[a:b].unsqueeze(-1)
        d_v.index_add_(0, src[a:b], dv_e)
        if vt.numel():
            d_vt.index_add_(0, trow[a:b], dv_e)
    # softmax backward: alpha * (d_alpha - sum_{e' -> t} alpha_e' d_alpha_e')
    dot = torch.zeros(num_nodes, H, **f32).index_add_(0, dst,
                                                      alpha * d_alpha)
    d_score = alpha * (d_alpha - dot.index_select(0, dst))
    d_qr = torch.zeros(qr.shape, **f32)
    d_k = torch.zeros(k.shape, **f32)
    d_kt = torch.zeros(kt.shape, **f32)
    for a, b in _chunks(E, chunk):
        g = d_score[a:b].unsqueeze(-1)
        k_e = _gather(k, src[a:b], kt, trow[a:b])
        d_qr.index_add_(0, pair[a:b], g * k_e)
        dk_e = g * qr.index_select(0, pair[a:b]).to(g)
        d_k.index_add_(0, src[a:b], dk_e)
        if kt.numel():
            d_kt.index_add_(0, trow[a:b], dk_e)
    return (d_qr.to(qr.dtype), d_k.to(k.dtype), d_v.to(v.dtype),
            d_kt.to(kt.dtype), d_vt.to(vt.dtype))


@edge_attention_bwd.register_fake
def _(du, alpha, qr, k, v, kt, vt, src, dst, pair, trow, num_nodes, chunk):
    return (torch.empty_like(qr), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(kt), torch.empty_like(vt))


def _setup_context(ctx, inputs, output):
    qr, k, v, kt, vt, src, dst, pair, trow, num_nodes, chunk = inputs
    ctx.save_for_backward(output[1], qr, k, v, kt, vt, src, dst, pair, trow)
    ctx.num_nodes, ctx.chunk = num_nodes, chunk


def _backward(ctx, du, _d_alpha):
    alpha, qr, k, v, kt, vt, src, dst, pair, trow = ctx.saved_tensors
    grads = edge_attention_bwd(du, alpha, qr, k, v, kt, vt, src, dst, pair,
                               trow, ctx.num_nodes, ctx.chunk)
    return grads + (None, ) * 6


edge_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


def edge_attention(qr: Tensor, k: Tensor, v: Tensor, src: Tensor,
                   dst: Tensor, pair: Tensor, num_nodes: int, chunk: int,
                   kt: Tensor = None, vt: Tensor = None,
                   trow: Tensor = None) -> Tuple[Tensor, Tensor]:
    """``(u [P, H, d], alpha [E, H])``, accumulated in float32 or wider;
    see the module docstring.
    ``alpha`` carries no gradient (it is for inspection)."""
    dtype = torch.promote_types(torch.promote_types(qr.dtype, k.dtype),
                                v.dtype)
    qr, k, v = qr.to(dtype), k.to(dtype), v.to(dtype)
    if kt is None:
        kt = vt = k.new_empty((0, ) + tuple(k.shape[1:]))
        trow = src.new_empty(0)
    else:
        kt, vt = kt.to(dtype), vt.to(dtype)
    return edge_attention_fwd(qr, k, v, kt, vt, src, dst, pair, trow,
                              num_nodes, chunk)
