"""The ``'autograd'`` backend of the dense core: the products of the
hand-written backend (:mod:`~torch_geometric_hgt.dense.math`) differentiated
by autograd, for half precision, autocast, ``torch.compile`` and
checkpointing; the softmax accumulates in float32 and keeps its graph."""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric_hgt.dense import math as M
from torch_geometric_hgt.functional.softmax import adjacency_softmax
from torch_geometric_hgt.functional.update import (UpdateWeights,
                                                   hgt_update_soft)


def dense_autograd(x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                   node_mask: Optional[Tensor], w: M.Weights,
                   s: M.Sizes) -> Tensor:
    """The dense layer on a batch of graphs ``[B, N, ...]`` (see
    :func:`~torch_geometric_hgt.dense.core.dense_hgt`)."""
    B, N, _ = x.shape
    H, d, T, D = s.n_heads, s.d, s.num_node_types, s.out_dim
    P = P.to(x.dtype)
    xf, Pf = x.reshape(B * N, -1), P.reshape(B * N, -1)
    # sum_t P_t (W_t x + b_t) as one GEMM of [P_t x_t..., P] against
    # stacked [W_t^T..., b]: no [B, N, T, 3F] output to reduce
    kqv = torch.cat([M.typed_input(xf, Pf), Pf], -1) @ w.kqv
    k, q, v = M.heads(kqv, H, d, B)
    pair = M.pair_products(k, torch.bmm(q, w.query_fold.to(q.dtype)), s)
    E = E.to(pair.dtype)
    score = (pair.view(H, B, N, N, -1) * E).sum(-1).float()
    a = M.edge_weights(adj.float(), node_mask)
    alpha = (a * adjacency_softmax(score, a)).to(pair.dtype)
    agg = M.aggregate(alpha, E, v, w._replace(msg=w.msg.to(v.dtype)), B,
                      s)[0]
    agg = agg.transpose(0, 1).reshape(B, N, H * d)
    # the stacked output map back to [T, out, out] per type (views)
    out = hgt_update_soft(
        agg, x, P, w.out.t().reshape(T, D, D), w.out_bias.view(T, D),
        w.keep_x, UpdateWeights(None, w.gamma, w.beta, s.eps, s.dropout),
        training=s.dropout > 0, dropout_per_type=False)
    if node_mask is not None:
        out = out * node_mask.unsqueeze(-1).to(out.dtype)
    return out
