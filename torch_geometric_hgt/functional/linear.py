"""Typed and relation-wise linear maps: per node type (one weight per type,
rows gathered or sorted by type) and per relation (the folds that move the
relation transforms onto per-(target, relation) rows)."""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def typed_linear(x: Tensor, node_type: Tensor, weight: Tensor,
                 bias: Tensor) -> Tensor:
    """``weight[node_type[n]] @ x[n] + bias[node_type[n]]`` for every row.

    One GEMM against all ``T`` weights (``weight [T, out, in]``) followed by a
    gather: ``T`` times the FLOPs of the typed product, but no host sync and
    no Python loop, so it traces under ``torch.compile``.
    """
    T, out_dim, _ = weight.shape
    y = torch.nn.functional.linear(x, weight.reshape(T * out_dim, -1),
                                   bias.reshape(-1))
    idx = node_type.view(-1, 1, 1).expand(-1, 1, out_dim)
    return y.view(-1, T, out_dim).gather(1, idx).squeeze(1)


def type_order(node_type: Tensor, num_node_types: int
               ) -> Tuple[Tensor, Tensor, List[int]]:
    """``(perm, rank, sizes)``: ``node_type[perm]`` is sorted (stable),
    ``rank`` inverts ``perm`` and ``sizes`` counts each type. One host sync
    (the sizes); eager only."""
    perm = torch.argsort(node_type, stable=True)
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(perm.numel(), device=perm.device)
    return perm, rank, torch.bincount(node_type,
                                      minlength=num_node_types).tolist()


class _ConcatLinear(torch.autograd.Function):
    """``cat([x_t @ w_t^T + b_t])`` with each product written straight into
    its rows of one output (no concatenation copy), and likewise in
    backward."""
    @staticmethod
    def forward(ctx, num: int, *args: Tensor) -> Tensor:
        xs, ws, bs = args[:num], args[num:2 * num], args[2 * num:]
        ctx.save_for_backward(*xs, *ws)
        ctx.num = num
        y = xs[0].new_empty(sum(x.size(0) for x in xs), ws[0].size(0))
        for x, w, b, out in zip(xs, ws, bs,
                                y.split([x.size(0) for x in xs])):
            if x.size(0):
                torch.addmm(b, x, w.t(), out=out)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        saved, num = ctx.saved_tensors, ctx.num
        xs, ws = saved[:num], saved[num:]
        dys = dy.contiguous().split([x.size(0) for x in xs])
        dxs = [dyt @ w if ctx.needs_input_grad[1 + t] else None
               for t, (dyt, w) in enumerate(zip(dys, ws))]
        dws = [dyt.t() @ x for dyt, x in zip(dys, xs)]
        dbs = [dyt.sum(0) for dyt in dys]
        return (None, *dxs, *dws, *dbs)


def concat_linear(xs: List[Tensor], weights: List[Tensor],
                  biases: List[Tensor]) -> Tensor:
    """``torch.cat([F.linear(x, w, b) for ...])`` for row blocks with their
    own weights (input sizes may differ), without the concatenation copy;
    autocast's dtype applies as to ``F.linear`` (eager only)."""
    device = xs[0].device.type
    dtype = torch.get_autocast_dtype(device) \
        if torch.is_autocast_enabled(device) else xs[0].dtype
    with torch.autocast(device, enabled=False):
        return _ConcatLinear.apply(len(xs), *(t.to(dtype) for t in (
            *xs, *weights, *biases)))


def typed_linear_sorted(x: Tensor, sizes: List[int], weight: Tensor,
                        bias: Tensor) -> Tensor:
    """:func:`typed_linear` for rows sorted by type, ``sizes[t]`` rows of
    type ``t``: one GEMM per type, the typed FLOPs only (eager only)."""
    return concat_linear(x.split(sizes), weight.unbind(0), bias.unbind(0))


def query_fold(relation_att: Tensor, relation_pri: Tensor) -> Tensor:
    """``mu[r, h] / sqrt(d) A[r, h]^T``, ``[R, H, d, d]``: the relation key
    transform and prior moved onto the query side, so that
    ``(q @ W[r, h]) . k`` is the score of ``k`` under relation ``r``."""
    R, H, d, _ = relation_att.shape
    scale = (relation_pri / math.sqrt(d)).view(R, H, 1, 1)
    return (relation_att * scale).transpose(-1, -2)


def relations_by_column(w: Tensor) -> Tensor:
    """``[R, H, d, e]`` -> per head ``[H, d, R e]`` (column ``r e + j``):
    one product with it applies every relation's ``w[r, h]``."""
    R, H, d, e = w.shape
    return w.permute(1, 2, 0, 3).reshape(H, d, R * e)


def relations_by_row(w: Tensor) -> Tensor:
    """``[R, H, d, e]`` -> per head ``[H, R d, e]`` (row ``r d + i``):
    one product with it sums every relation's ``x[r] @ w[r, h]``."""
    R, H, d, e = w.shape
    return w.transpose(0, 1).reshape(H, R * d, e)


def fold_pairs(q: Tensor, w: Tensor, out: Optional[Tensor] = None
               ) -> Tensor:
    """``q[h, n] @ w[r, h]`` for every relation: ``q [H, N, d]``, ``w [R,
    H, d, e]`` -> ``[H, N R, e]`` (row ``n R + r``, the pair rows'
    ``'dense'`` layout), one batched GEMM (into ``out`` if given)."""
    H, N, _ = q.shape
    return torch.bmm(q, relations_by_column(w.to(q.dtype)),
                     out=None if out is None else out.view(H, N, -1)) \
        .view(H, N * w.size(0), -1)


def sum_pairs(u: Tensor, w: Tensor, out: Optional[Tensor] = None
              ) -> Tensor:
    """``sum_r u[h, n R + r] @ w[r, h]``: ``u [H, N R, d]``, ``w [R, H,
    d, e]`` -> ``[H, N, e]`` (into ``out`` if given)."""
    R, d = w.size(0), w.size(2)
    return torch.bmm(u.view(u.size(0), -1, R * d),
                     relations_by_row(w.to(u.dtype)), out=out)


def fold_pairs_backward(d_qr: Tensor, q: Tensor, w: Tensor,
                        d_q: Tensor) -> Tensor:
    """For :func:`fold_pairs`: writes ``d_q [H, N, d]`` and returns the
    gradient of ``w``."""
    (H, N, d), (R, e) = q.shape, (w.size(0), w.size(3))
    d_qr = d_qr.view(H, N, R * e)
    torch.bmm(d_qr, relations_by_column(w).transpose(1, 2), out=d_q)
    return torch.bmm(q.transpose(1, 2), d_qr).view(H, d, R, e) \
        .permute(2, 0, 1, 3)


def sum_pairs_backward(d_agg: Tensor, u: Tensor, w: Tensor,
                       du: Tensor) -> Tensor:
    """For :func:`sum_pairs`: writes ``du [H, N R, d]`` and returns the
    gradient of ``w``."""
    (H, N, e), (R, d) = d_agg.shape, (w.size(0), w.size(2))
    torch.bmm(d_agg, relations_by_row(w).transpose(1, 2),
              out=du.view(H, N, R * d))
    return torch.bmm(u.view(H, N, R * d).transpose(1, 2), d_agg) \
        .view(H, R, d, e).transpose(0, 1)


def temporal_table(table: Tensor, w_k: Tensor, w_v: Tensor) -> Tensor:
    """The temporal encoding's share of K and V: ``w_k[t] @ table[p]`` and
    ``w_v[t] @ table[p]`` for every node type ``t`` and time ``p``, ``[T
    rows, 2 F]`` (row ``t rows + p``) from ``table [rows, in]`` and ``w_k``,
    ``w_v [T, F, in]``. RTE is added to a source's input, so by linearity
    (no bias) to its K and V."""
    w = torch.cat([w_k, w_v], 1)
    return torch.einsum('pi,toi->tpo', table, w).reshape(-1, w.size(1))
