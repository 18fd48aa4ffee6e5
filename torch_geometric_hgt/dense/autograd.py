"""The ``'autograd'`` backend of the dense core: the forward of the
hand-written backend (:mod:`~torch_geometric_hgt.dense.math`) differentiated
by autograd, for half precision, autocast, ``torch.compile`` and
checkpointing; the softmax runs in float32 or wider and keeps its graph."""
from typing import Optional

import torch
from torch import Tensor

from torch_geometric_hgt.dense import math as M
from torch_geometric_hgt.functional.softmax import accumulation_dtype
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
    a = M.edge_weights(adj.to(accumulation_dtype(adj)), node_mask)
    agg = M.attend(kqv, a, E, w, s, B)[1].transpose(0, 1).reshape(B, N,
                                                                  H * d)
    # the stacked output map back to [T, out, out] per type (views)
    out = hgt_update_soft(
        agg, x, P, w.out.t().reshape(T, D, D), w.out_bias.view(T, D),
        w.keep_x, UpdateWeights(None, w.gamma, w.beta, s.eps, s.dropout),
        training=s.dropout > 0, dropout_per_type=False)
    if node_mask is not None:
        out = out * node_mask.unsqueeze(-1).to(out.dtype)
    return out
