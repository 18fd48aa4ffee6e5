"""The node-level / edge-level split of :class:`UltraFastHGTConv`, also
what :class:`MemoryEfficientHGTConv` runs under ``torch.compile``."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt.conv.edge_attention import edge_attention
from torch_geometric_hgt.conv.relation_attention import relation_attention
from torch_geometric_hgt.ops import (fold_relations_by_head,
                                     relation_matmul, sum_relations_by_head,
                                     type_order, typed_linear,
                                     typed_linear_sorted)
from torch_geometric_hgt.params import HGTParameters


def fused_forward(p: HGTParameters, x: Tensor, node_type: Tensor,
                  edge_index: Tensor, edge_type: Tensor,
                  edge_time: Optional[Tensor], chunk: int,
                  fold_per_chunk: bool = False) -> Tuple[Tensor, Tensor]:
    r"""HGT of layer ``p`` as: nodes sorted by type for the whole layer, so
    typed K, Q, V and output maps are one GEMM per type on a slice;
    edges sorted by (target, relation); the relation key transform folded
    onto the query side per (target, relation) pair,
    :math:`\tilde q = \frac{\mu}{\sqrt d} Q A^\top`; a chunked edge
    operator (scores, float32 segment softmax, :math:`\sum \alpha V` per
    pair as ``embedding_bag`` sums); the message transform after
    aggregation per pair,
    :math:`(\sum_e \alpha_e V_e) M_r`.

    ``fold_per_chunk=False`` (fastest): the relation transforms run once
    over all pairs, indexed densely (``target * R + relation``) when ``N R``
    is no larger than ``E`` (or while tracing), else compacted to the pairs
    that occur; pair-level ``[P, F]`` tensors are kept for backward.
    ``fold_per_chunk=True`` (bounded edge memory, for
    :class:`MemoryEfficientHGTConv` under ``torch.compile``): they run
    inside the edge operator for the pairs of each chunk and are recomputed
    in its backward, so only node-level and ``[E, H]`` tensors are kept.
    Returns the output and the attention weights ``[E, H]`` in input order.
    """
    N, R, H, d, D = (x.size(0), p.num_relations, p.n_heads, p.d_k,
                     p.out_dim)
    if torch.compiler.is_compiling():  # no host syncs: all-types GEMMs
        rank = None

        def lin(inp: Tensor, w: Tensor, b: Tensor) -> Tensor:
            return typed_linear(inp, node_type, w, b)
    else:  # nodes sorted by type for the whole layer: one GEMM per type
        perm_n, rank, sizes = type_order(node_type, p.num_types)
        x, node_type = x.index_select(0, perm_n), node_type[perm_n]
        edge_index = rank[edge_index]

        def lin(inp: Tensor, w: Tensor, b: Tensor) -> Tensor:
            return typed_linear_sorted(inp, sizes, w, b)
    key = edge_index[1] * R + edge_type
    perm = torch.argsort(key)
    key = key.index_select(0, perm)
    src = edge_index[0].index_select(0, perm)

    k, q, v = lin(x, *p.kqv_weight()).view(N, 3, H, d).unbind(1)
    kt = vt = trow = None
    if p.use_RTE:
        kt, vt = p.rte_kv_table().view(-1, 2, H, d).unbind(1)
        trow = node_type.index_select(0, src) * p.max_len + \
            edge_time.index_select(0, perm)

    if fold_per_chunk:
        agg, alpha = relation_attention(q, k, v, p.relation_att,
                                        p.relation_pri, p.relation_msg, src,
                                        key, N, chunk, kt, vt, trow)
        agg = agg.to(x.dtype)
    else:
        agg, alpha = _global_fold(p, q, k, v, kt, vt, trow, src, key, N,
                                  chunk)
    out = p.update_hard(x, node_type, lin(F.gelu(agg.reshape(N, D)),
                                          *p.a_weight()))
    if rank is not None:
        out = out.index_select(0, rank)
    att = torch.empty_like(alpha).index_copy_(0, perm, alpha)
    return out, att.to(out.dtype)


def _global_fold(p: HGTParameters, q: Tensor, k: Tensor, v: Tensor,
                 kt: Optional[Tensor], vt: Optional[Tensor],
                 trow: Optional[Tensor], src: Tensor, key: Tensor, N: int,
                 chunk: int) -> Tuple[Tensor, Tensor]:
    """``(agg [N, H, d], alpha [E, H])``; the edge operator works on
    head-major tensors, so the folds are batched GEMMs over heads."""
    R, E = p.num_relations, key.numel()
    dst = torch.div(key, R, rounding_mode='floor')
    compact = N * R > max(E, 1) and not torch.compiler.is_compiling()
    w_q = p.query_fold_weight()
    if compact:
        pairs, pair = torch.unique_consecutive(key, return_inverse=True)
        pair_node = torch.div(pairs, R, rounding_mode='floor')
        pair_rel = pairs - pair_node * R
        qr = relation_matmul(q.index_select(0, pair_node), pair_rel,
                             w_q).transpose(0, 1)
    else:
        pair = key
        qr = fold_relations_by_head(q, w_q)
    if kt is not None:
        kt, vt = kt.transpose(0, 1), vt.transpose(0, 1)
    u, alpha = edge_attention(qr, k.transpose(0, 1), v.transpose(0, 1), src,
                              dst, pair, N, chunk, kt, vt, trow)
    if compact:
        agg = torch.zeros(N, p.n_heads, p.d_k, dtype=u.dtype,
                          device=u.device)
        return agg.index_add(0, pair_node, relation_matmul(
            u.transpose(0, 1), pair_rel, p.relation_msg)), alpha.t()
    return sum_relations_by_head(u, p.relation_msg), alpha.t()
