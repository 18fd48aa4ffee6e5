"""The edge operator of the pair-folded backends on head-major ``[H, rows,
d]`` tensors, per head:

    score_e = qr[pair_e] . k_e,   k_e = k[src_e] (+ kt[trow_e])
    alpha   = softmax of score over edges with the same dst (float32)
    u[p]    = sum_{e: pair_e = p} alpha_e v_e,   v_e = v[src_e] (+ vt[trow_e])

with a hand-written backward. Edges come sorted by ``pair``, so every sum
over edges is an ``embedding_bag`` (gather, scale, sum in one pass; no
edge-level row is written); only the dot products gather rows, over chunks
of edges. A ``torch.library`` custom op (one opaque node under
``torch.compile(fullgraph=True)``).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt.functional.softmax import (
    accumulation_dtype, segment_softmax, segment_softmax_backward)


def chunk_ranges(n: int, chunk: int) -> List[Tuple[int, int]]:
    """``[start, end)`` of consecutive chunks of ``chunk`` items out of
    ``n``."""
    chunk = max(int(chunk), 1)
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def csr_offsets(index: Tensor, size: int) -> Tensor:
    """CSR offsets ``[size + 1]`` of the rows ``index`` falls into."""
    out = index.new_zeros(size + 1)
    torch.cumsum(torch.bincount(index, minlength=size), 0, out=out[1:])
    return out


def bag_sums(table: Tensor, index: Tensor, offsets: Tensor, weight: Tensor,
             out: Optional[Tensor] = None, chunk: int = 0) -> Tensor:
    """``out[h, b] = sum_{j in bag b} weight[h, j] table[h, index[j]]`` for
    ``table [H, rows, d]``, ``weight [H, n]``, bags given by ``offsets``:
    one ``embedding_bag`` over the heads' rows laid end to end. With ``out
    [H, bags, d]``, bags are summed ``chunk`` at a time into it (no
    full-size temporary)."""
    H, rows, d = table.shape
    n, shift = index.numel(), torch.arange(H, device=index.device)
    index = (index + (shift * rows).unsqueeze(1)).view(-1)
    offsets = torch.cat([(offsets[:-1] + (shift * n).unsqueeze(1)).view(-1),
                         offsets.new_full((1, ), H * n)])
    table, weight = table.reshape(H * rows, d), weight.reshape(-1)
    if out is None:
        return F.embedding_bag(index, table, offsets, mode='sum',
                               per_sample_weights=weight,
                               include_last_offset=True).view(H, -1, d)
    bags, step = offsets.numel() - 1, max(chunk, 1)
    starts = offsets[::step].tolist() + [H * n]
    flat = out.view(bags, d)
    for i, b in enumerate(range(0, bags, step)):
        e, lo, hi = min(b + step, bags), starts[i], starts[i + 1]
        flat[b:e] = F.embedding_bag(
            index[lo:hi], table, offsets[b:e + 1] - lo, mode='sum',
            per_sample_weights=weight[lo:hi], include_last_offset=True)
    return out


def gather_dots(a: Tensor, ia: Tensor, b: Tensor, ib: Tensor, bt: Tensor,
                it: Tensor, chunk: int) -> Tensor:
    """``out[h, e] = a[h, ia_e] . (b[h, ib_e] (+ bt[h, it_e]))``."""
    out = a.new_empty(a.size(0), ia.numel())
    for s, t in chunk_ranges(ia.numel(), chunk):
        for h in range(a.size(0)):
            b_e = b[h].index_select(0, ib[s:t])
            if bt.numel():
                b_e += bt[h].index_select(0, it[s:t])
            out[h, s:t] = (a[h].index_select(0, ia[s:t]) * b_e).sum(-1)
    return out


def sorted_rows(index: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """``(order, offsets)``: edges stably sorted by the table row ``index``
    they read, and the CSR offsets of a table with ``size`` rows."""
    return torch.argsort(index, stable=True), csr_offsets(index, size)


def by_rows(table: Tensor, pair: Tensor, rows: Tuple[Tensor, Tensor],
            weight: Tensor, out: Optional[Tensor] = None,
            chunk: int = 0) -> Tensor:
    """Gradient of the key or value table the edges read: ``sum_e
    weight_e table[pair_e]`` per table row, given :func:`sorted_rows`
    (``out``, ``chunk``: as :func:`bag_sums`)."""
    order, offsets = rows
    return bag_sums(table, pair.index_select(0, order), offsets,
                    weight.index_select(1, order), out, chunk)


def aggregate(v: Tensor, vt: Tensor, src: Tensor, trow: Tensor,
              pair: Tensor, num_pairs: int, alpha: Tensor) -> Tensor:
    """``u [H, num_pairs, d]``: ``sum_{e: pair_e = p} alpha_e v_e`` for
    edges sorted by ``pair``."""
    offsets = csr_offsets(pair, num_pairs)
    u = bag_sums(v, src, offsets, alpha)
    if vt.numel():
        u += bag_sums(vt, trow, offsets, alpha)
    return u


def attention_weights(qr: Tensor, k: Tensor, kt: Tensor, src: Tensor,
                      dst: Tensor, pair: Tensor, trow: Tensor,
                      num_nodes: int, chunk: int) -> Tensor:
    """``alpha [H, E]``: the scores' softmax over each target's edges."""
    return segment_softmax(gather_dots(qr, pair, k, src, kt, trow, chunk),
                           dst, num_nodes, dim=1)


@torch.library.custom_op('torch_geometric_hgt::edge_attention_fwd',
                         mutates_args=())
def edge_attention_fwd(qr: Tensor, k: Tensor, v: Tensor, kt: Tensor,
                       vt: Tensor, src: Tensor, dst: Tensor, pair: Tensor,
                       trow: Tensor, num_nodes: int,
                       chunk: int) -> Tuple[Tensor, Tensor]:
    acc, out_dtype = accumulation_dtype(k), v.dtype
    qr, k, v, kt, vt = (t.to(acc) for t in (qr, k, v, kt, vt))
    alpha = attention_weights(qr, k, kt, src, dst, pair, trow, num_nodes,
                              chunk)
    u = aggregate(v, vt, src, trow, pair, qr.size(1), alpha)
    return u.to(out_dtype), alpha


@edge_attention_fwd.register_fake
def _(qr, k, v, kt, vt, src, dst, pair, trow, num_nodes, chunk):
    return (qr.new_empty(qr.shape, dtype=v.dtype),
            k.new_empty((k.size(0), src.size(0)), dtype=accumulation_dtype(k)))


def _times(times: Optional[Tuple[Tensor, Tensor]], trow: Tensor,
           table: Tensor) -> Tuple[Tensor, Tensor]:
    return times if times is not None else sorted_rows(trow, table.size(1))


def score_backward(du: Tensor, alpha: Tensor, v: Tensor, vt: Tensor,
                   src: Tensor, dst: Tensor, pair: Tensor, trow: Tensor,
                   num_nodes: int, chunk: int) -> Tensor:
    """``d_score [H, E]`` from the per-pair sums' gradient ``du``."""
    d_alpha = gather_dots(du, pair, v, src, vt, trow, chunk)
    return segment_softmax_backward(alpha, d_alpha, dst, num_nodes, dim=1)


def value_backward(du: Tensor, alpha: Tensor, vt: Tensor, pair: Tensor,
                   trow: Tensor, sources: Tuple[Tensor, Tensor],
                   times: Optional[Tuple[Tensor, Tensor]] = None
                   ) -> Tuple[Tensor, Tensor]:
    """``(d_v, d_vt)``. ``sources``: :func:`sorted_rows` of ``src`` over
    the rows ``d_v`` gets (all of ``v``, or e.g. a chunk's distinct
    sources); ``times`` likewise for ``trow`` (default: all rows of
    ``vt``)."""
    d_v = by_rows(du, pair, sources, alpha)
    d_vt = torch.zeros_like(vt)
    if vt.numel():
        d_vt = by_rows(du, pair, _times(times, trow, vt), alpha)
    return d_v, d_vt


def key_backward(d_score: Tensor, qr: Tensor, k: Tensor, kt: Tensor,
                 src: Tensor, pair: Tensor, trow: Tensor,
                 sources: Tuple[Tensor, Tensor],
                 times: Optional[Tuple[Tensor, Tensor]] = None
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """``(d_qr, d_k, d_kt)`` from the score gradients; rows as in
    :func:`value_backward`."""
    offsets = csr_offsets(pair, qr.size(1))
    d_qr = bag_sums(k, src, offsets, d_score)
    d_k = by_rows(qr, pair, sources, d_score)
    d_kt = torch.zeros_like(kt)
    if kt.numel():
        d_qr += bag_sums(kt, trow, offsets, d_score)
        d_kt = by_rows(qr, pair, _times(times, trow, kt), d_score)
    return d_qr, d_k, d_kt


def attention_backward(du: Tensor, alpha: Tensor, qr: Tensor, k: Tensor,
                       v: Tensor, kt: Tensor, vt: Tensor, src: Tensor,
                       dst: Tensor, pair: Tensor, trow: Tensor,
                       num_nodes: int, chunk: int
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of the edge operator (float32 or wider):
    ``(d_qr, d_k, d_v, d_kt, d_vt)``."""
    sources = sorted_rows(src, k.size(1))
    times = sorted_rows(trow, kt.size(1)) if kt.numel() else None
    d_score = score_backward(du, alpha, v, vt, src, dst, pair, trow,
                             num_nodes, chunk)
    d_qr, d_k, d_kt = key_backward(d_score, qr, k, kt, src, pair, trow,
                                   sources, times)
    d_v, d_vt = value_backward(du, alpha, vt, pair, trow, sources, times)
    return d_qr, d_k, d_v, d_kt, d_vt


@torch.library.custom_op('torch_geometric_hgt::edge_attention_bwd',
                         mutates_args=())
def edge_attention_bwd(du: Tensor, alpha: Tensor, qr: Tensor, k: Tensor,
                       v: Tensor, kt: Tensor, vt: Tensor, src: Tensor,
                       dst: Tensor, pair: Tensor, trow: Tensor,
                       num_nodes: int, chunk: int
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    acc = accumulation_dtype(k)
    dtypes = [t.dtype for t in (qr, k, v, kt, vt)]
    grads = attention_backward(*(t.to(acc).contiguous()
                                 for t in (du, alpha, qr, k, v, kt, vt)),
                               src, dst, pair, trow, num_nodes, chunk)
    return tuple(g.to(t) for g, t in zip(grads, dtypes))


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
    """``(u [H, P, d], alpha [H, E])`` from head-major ``qr [H, P, d]``,
    ``k``, ``v [H, N, d]`` (and tables ``kt``, ``vt [H, rows, d]`` with
    row ``trow_e`` per edge); ``pair`` must be sorted. ``u`` is
    accumulated in float32 or wider; ``alpha`` carries no gradient (it is
    for inspection). See the module docstring."""
    dtype = torch.promote_types(torch.promote_types(qr.dtype, k.dtype),
                                v.dtype)
    qr, k, v = (t.to(dtype).contiguous() for t in (qr, k, v))
    if kt is None:
        kt = vt = k.new_empty((k.size(0), 0, k.size(2)))
        trow = src.new_empty(0)
    else:
        kt, vt = (t.to(dtype).contiguous() for t in (kt, vt))
    return edge_attention_fwd(qr, k, v, kt, vt, src, dst, pair, trow,
                              num_nodes, chunk)
