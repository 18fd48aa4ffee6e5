"""One chunk of graphs through :class:`~torch_geometric_hgt.DenseHGTConv`'s
hand-written forward and backward, and the state the backward keeps:
K/Q/V, the softmax weights, the LayerNorm statistics and the dropout mask
(1.8 KB per node for 128-d, 4 heads, 8 nodes per graph, 6 types), allocated
once per layer call. The backward recomputes only the output map and the
small per-graph products, and writes the input's gradient into the K/Q/V
rows it has finished with. Picks the C kernels where they run, else the
torch math."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt import native
from torch_geometric_hgt.dense import kernels
from torch_geometric_hgt.dense import math as M
from torch_geometric_hgt.dense.math import Saved, Sizes, Weights
from torch_geometric_hgt.functional.update import dropout_keep


def state_buffers(B: int, N: int, x: Tensor, s: Sizes, norm: bool
                  ) -> Saved:
    """What the backward needs, for all ``B`` graphs: allocated once, so
    that the chunks' transients do not fragment the heap around it."""
    n = B * N
    stats = [x.new_empty(n, s.num_node_types, 1) if norm else None
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


def rows(state: Saved, part: slice, N: int) -> Saved:
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
    n, H, d, T = b * N, s.n_heads, s.d, s.num_node_types
    xf, Pf = x.reshape(n, -1), P.reshape(n, T)
    # (a contiguous [P_t x...] and the biases apart: 774-wide operands and
    # strided writes both run slow)
    kqv = torch.mm(M.typed_input(xf, Pf), w.kqv[:-T],
                   out=None if into is None else into.kqv)
    kqv.addmm_(Pf, w.kqv[-T:])
    a = M.edge_weights(adj, mask)
    fast = native.usable(x)
    if fast and native.attention_usable(N, d):
        expo = x.new_empty(H, b, N, N) if into is None else into.expo
        agg = native.attention_forward(kqv, w.query_fold, w.msg, E, a, expo)
    else:
        expo, agg = M.attend(kqv, a, E, w, s, b)
        agg = agg.transpose(0, 1).reshape(n, s.out_dim)
    if fast:
        out, mean, rstd = kernels.update_forward(
            agg, xf, Pf, keep, w, s,
            *([None, None] if into is None else [into.mean, into.rstd]))
    else:
        out, mean, rstd = M.update_forward(agg, xf, Pf, keep, w, s)
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


def chunk_backward(g: Tensor, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                   mask: Optional[Tensor], w: Weights, s: Sizes,
                   saved: Saved, need: List[bool], wt: Tuple[Tensor, ...]
                   ) -> Tuple[List[Optional[Tensor]], List[Tensor]]:
    """Gradients of one chunk: of ``x, P, adj, E`` (where ``need``) and of
    every weight in ``w`` (``None`` where ``w`` has none; indexed as the
    fields of :class:`Weights`). ``wt``:
    :func:`~torch_geometric_hgt.dense.math.transposed_weights`."""
    b, N, _ = x.shape
    n, H, d, T, R = b * N, s.n_heads, s.d, s.num_node_types, s.num_relations
    D = s.out_dim
    xf, Pf = x.reshape(n, -1), P.reshape(n, T)
    g = g.reshape(n, D)
    if mask is not None:
        g = g * mask.reshape(n, 1)
    dw: List[Optional[Tensor]] = [None] * len(w)
    a = M.edge_weights(adj, mask)
    fast = native.usable(x)
    attn_kernels = fast and native.attention_usable(N, d)
    if attn_kernels:
        agg = native.attention_forward(saved.kqv, w.query_fold, w.msg, E, a,
                                       saved.expo, recompute=True)
    else:
        k, _, v = M.heads(saved.kqv, H, d, b)
        alpha = a * saved.expo
        agg, u, coef = M.aggregate(alpha, E, v, w, b, s)
        agg = agg.transpose(0, 1).reshape(n, D)
    update = kernels.update_backward if fast else M.update_backward
    dz, h, dP, dx, dw[4:8] = update(g, agg, xf, Pf, saved, w, s, need[0])
    # (dz^T h, transposed: MKL runs it 15-20% faster than h^T dz here)
    dw[3] = torch.mm(dz.t(), h).t()
    dagg = torch.ops.aten.gelu_backward(dz @ wt[2], agg)
    del dz, h

    # attention
    if attn_kernels:
        dkqv, dw[1], dw[2], dE, dadj = native.attention_backward(
            saved.kqv, w.query_fold, wt[3], wt[4], E, a, saved.expo, dagg,
            need[3], need[2])
    else:
        dagg = dagg.view(n, H, d).transpose(0, 1)  # [H, n, d]
        dw[2] = torch.bmm(u.view(H, n, R * d).transpose(1, 2), dagg)
        du = torch.bmm(dagg, w.msg.transpose(1, 2))  # [H, n, R d]
        del u
        dkqv = torch.empty_like(saved.kqv)
        q = M.queries(saved.kqv, s)
        dqa, dE, dadj = M.attention_backward(du, k, v, q, coef, alpha, E,
                                             saved.expo, dkqv, need, w, s,
                                             b)
        del coef, du
        dw[1] = torch.bmm(q.transpose(1, 2), dqa)
        dq = torch.bmm(dqa, w.query_fold.transpose(1, 2))
        dkqv.view(n, 3, H, d)[:, 1].copy_(dq.transpose(0, 1))
        del dqa, dq
    if dadj is not None and mask is not None:
        dadj = M.edge_weights(dadj, mask)

    # typed input projection
    dw[0] = dkqv.new_empty(w.kqv.shape)
    torch.mm(M.typed_input(xf, Pf).t(), dkqv, out=dw[0][:-T])
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


def x_grad_buffer(state: Saved, x: Tensor) -> Tensor:
    """Where the backward writes the gradient of ``x [B, N, in]``: the
    first ``in`` columns of the K/Q/V rows of :func:`state_buffers`, each
    chunk's once its backward is done with them (a strided view). The
    layer's largest buffer is reused rather than a second one allocated
    while both layers' states are still held."""
    B, N, F = x.shape
    if F > state.kqv.size(1):
        return torch.empty_like(x)
    return state.kqv.view(B, N, state.kqv.size(1))[..., :F]


