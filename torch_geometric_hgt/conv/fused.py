"""The node-level / edge-level split of :class:`UltraFastHGTConv`, also
what :class:`MemoryEfficientHGTConv` runs under ``torch.compile``; its edge
phase, :func:`fused_attention`, is what :class:`~torch_geometric_hgt.HGTConv`
runs on PyG's dict layout."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt.buffers import BufferPool
from torch_geometric_hgt.conv.edge_attention import edge_attention
from torch_geometric_hgt.conv.layer_function import (pooled_forward,
                                                     supported)
from torch_geometric_hgt.conv.relation_attention import relation_attention
from torch_geometric_hgt.ops import (fold_relations_by_head, query_fold,
                                     relation_matmul, sum_relations_by_head,
                                     type_order, typed_linear,
                                     typed_linear_sorted, update_hard)
from torch_geometric_hgt.params import HGTParameters


def fused_forward(p: HGTParameters, x: Tensor, node_type: Tensor,
                  edge_index: Tensor, edge_type: Tensor,
                  edge_time: Optional[Tensor], chunk: int,
                  fold_per_chunk: bool = False,
                  pool: Optional[BufferPool] = None
                  ) -> Tuple[Tensor, Tensor]:
    r"""HGT of layer ``p`` as: nodes sorted by type for the whole layer, so
    typed K, Q, V and output maps are one GEMM per type on a slice, and
    :func:`fused_attention` for the edges. Returns the output and the
    attention weights ``[E, H]`` in input order. With a ``pool``, where
    :func:`~torch_geometric_hgt.conv.layer_function.supported`, the layer
    runs as one Function with a hand-written backward whose large tensors
    come from ``pool``.
    """
    N, H, d, D = x.size(0), p.n_heads, p.d_k, p.out_dim
    if pool is not None and not fold_per_chunk and supported(p, x):
        return pooled_forward(p, x, node_type, edge_index, edge_type, chunk,
                              pool)
    if torch.compiler.is_compiling():  # no host syncs: all-types GEMMs
        rank = None

        def lin(inp: Tensor, w: Tensor, b: Tensor) -> Tensor:
            return typed_linear(inp, node_type, w, b)
    else:  # nodes sorted by type for the whole layer: one GEMM per type
        perm_n, rank, sizes = type_order(node_type, p.num_node_types)
        x, node_type = x.index_select(0, perm_n), node_type[perm_n]
        edge_index = rank[edge_index]

        def lin(inp: Tensor, w: Tensor, b: Tensor) -> Tensor:
            return typed_linear_sorted(inp, sizes, w, b)

    k, q, v = lin(x, *p.kqv_weight()).view(N, 3, H, d).unbind(1)
    rte = None
    if p.use_RTE:
        rte = (p.rte_kv_table(),
               node_type.index_select(0, edge_index[0]) * p.max_len +
               edge_time)
    agg, att = fused_attention(q, k, v, edge_index, edge_type,
                               p.relation_att, p.relation_pri,
                               p.relation_msg, chunk, fold_per_chunk, rte)
    if fold_per_chunk:  # accumulated in float32
        agg = agg.to(x.dtype)
    out = update_hard(p, x, node_type, lin(F.gelu(agg.reshape(N, D)),
                                          *p.a_weight()))
    if rank is not None:
        out = out.index_select(0, rank)
    return out, att.to(out.dtype)


def fused_attention(q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor,
                    edge_type: Tensor, relation_att: Tensor,
                    relation_pri: Tensor, relation_msg: Tensor, chunk: int,
                    fold_per_chunk: bool = False,
                    rte: Optional[Tuple[Tensor, Tensor]] = None,
                    blocks: Optional[Tuple[List[int], List[int]]] = None
                    ) -> Tuple[Tensor, Tensor]:
    r"""The edge phase of HGT, shared by every sparse layer's fused path:
    edges sorted by (target, relation); the relation key transform folded
    onto the query side per (target, relation) pair,
    :math:`\tilde q = \frac{\mu}{\sqrt d} Q A^\top`; a chunked edge
    operator (scores, float32 segment softmax, :math:`\sum \alpha V` per
    pair as ``embedding_bag`` sums); the message transform after
    aggregation per pair, :math:`(\sum_e \alpha_e V_e) M_r`.

    ``fold_per_chunk=False`` (fastest): the relation transforms run once
    over all pairs, indexed densely (``target * R + relation``) when ``N R``
    is no larger than ``E`` (or while tracing), else compacted to the pairs
    that occur; pair-level ``[P, F]`` tensors are kept for backward.
    ``fold_per_chunk=True`` (bounded edge memory): they run inside the edge
    operator for the pairs of each chunk and are recomputed in its
    backward, so only node-level and ``[E, H]`` tensors are kept.

    Args:
        q, k, v (Tensor): Queries, keys and values ``[N, H, d]`` of one
            node set (sources and targets index the same rows).
        edge_index (Tensor): ``[2, E]`` (source, target).
        edge_type (Tensor): Relation of each edge ``[E]``, in ``[0, R)``.
        relation_att, relation_msg (Tensor): ``[R, H, d, d]``.
        relation_pri (Tensor): ``[R, H]``.
        chunk (int): Edges per chunk of the edge operator.
        fold_per_chunk (bool, optional): See above. (default: :obj:`False`)
        rte (Tuple[Tensor, Tensor], optional): The relative temporal
            encoding's key and value table ``[rows, 2 H d]`` and each edge's
            row of it ``[E]``. (default: :obj:`None`)
        blocks (Tuple[List[int], List[int]], optional): ``(sizes,
            target)``: the nodes as consecutive blocks of ``sizes[b]`` rows
            (PyG's layout: one block per node type), and the one block
            ``target[r]`` that relation ``r``'s edges point into. The pairs
            are then laid out relation by relation over those rows alone,
            and each relation's transforms are one batched GEMM on a
            block. Ignored with
            ``fold_per_chunk``. (default: :obj:`None`)

    Returns:
        ``(agg [N, H, d], alpha [E, H])``, ``alpha`` in input edge order
        (``agg`` in float32 with ``fold_per_chunk``).
    """
    N, R = q.size(0), relation_att.size(0)
    if blocks is not None and not fold_per_chunk:
        return _block_fold(q, k, v, edge_index, edge_type,
                           query_fold(relation_att, relation_pri),
                           relation_msg, blocks, chunk, rte)
    key = edge_index[1] * R + edge_type
    perm = torch.argsort(key)
    key = key.index_select(0, perm)
    src = edge_index[0].index_select(0, perm)
    kt = vt = trow = None
    if rte is not None:
        H, d = q.shape[1:]
        kt, vt = rte[0].view(-1, 2, H, d).unbind(1)
        trow = rte[1].index_select(0, perm)
    if fold_per_chunk:
        agg, alpha = relation_attention(q, k, v, relation_att, relation_pri,
                                        relation_msg, src, key, N, chunk, kt,
                                        vt, trow)
    else:
        agg, alpha = _global_fold(q, k, v, kt, vt, trow, src, key,
                                  query_fold(relation_att, relation_pri),
                                  relation_msg, chunk)
    return agg, torch.empty_like(alpha).index_copy_(0, perm, alpha)


def _global_fold(q: Tensor, k: Tensor, v: Tensor, kt: Optional[Tensor],
                 vt: Optional[Tensor], trow: Optional[Tensor], src: Tensor,
                 key: Tensor, w_q: Tensor, w_msg: Tensor,
                 chunk: int) -> Tuple[Tensor, Tensor]:
    """``(agg [N, H, d], alpha [E, H])``; the edge operator works on
    head-major tensors, so the folds are batched GEMMs over heads."""
    (N, H, d), R, E = q.shape, w_q.size(0), key.numel()
    dst = torch.div(key, R, rounding_mode='floor')
    compact = N * R > max(E, 1) and not torch.compiler.is_compiling()
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
        agg = torch.zeros(N, H, d, dtype=u.dtype, device=u.device)
        return agg.index_add(0, pair_node, relation_matmul(
            u.transpose(0, 1), pair_rel, w_msg)), alpha.t()
    return sum_relations_by_head(u, w_msg), alpha.t()


def _block_fold(q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor,
                edge_type: Tensor, w_q: Tensor, w_msg: Tensor,
                blocks: Tuple[List[int], List[int]], chunk: int,
                rte: Optional[Tuple[Tensor, Tensor]]
                ) -> Tuple[Tensor, Tensor]:
    """:func:`fused_attention` over node blocks: relation ``r`` targets
    only block ``b_r``, so its pairs are that block's rows, laid out
    relation by relation, and its folds are one batched GEMM on the
    block. Splits, not slices, so that backward writes each gradient
    once."""
    (N, H, d), device = q.shape, q.device
    sizes, target = blocks
    starts, base, bases = [0], 0, []
    for n in sizes:
        starts.append(starts[-1] + n)
    for b in target:
        bases.append(base)
        base += sizes[b]
    shift = torch.tensor([p - starts[b] for p, b in zip(bases, target)],
                         dtype=torch.long, device=device)
    pair = edge_index[1] + shift.index_select(0, edge_type)
    perm = torch.argsort(pair)
    pair = pair.index_select(0, perm)
    src = edge_index[0].index_select(0, perm)
    dst = edge_index[1].index_select(0, perm)
    kt = vt = trow = None
    if rte is not None:
        kt, vt = rte[0].view(-1, 2, H, d).unbind(1)
        kt, vt = kt.transpose(0, 1), vt.transpose(0, 1)
        trow = rte[1].index_select(0, perm)
    w_q = w_q.to(q.dtype)
    q_blocks = [qb.transpose(0, 1) for qb in q.split(sizes)]
    qr = torch.cat([torch.bmm(q_blocks[b], w_q[r])
                    for r, b in enumerate(target)] or
                   [q.new_empty(H, 0, d)], 1)
    u, alpha = edge_attention(qr, k.transpose(0, 1), v.transpose(0, 1), src,
                              dst, pair, N, chunk, kt, vt, trow)
    w_msg = w_msg.to(u.dtype)
    agg: List[Optional[Tensor]] = [None] * len(sizes)
    for r, (b, ur) in enumerate(zip(target, u.split([sizes[b] for b in
                                                     target], 1))):
        part = torch.bmm(ur, w_msg[r])
        agg[b] = part if agg[b] is None else agg[b] + part
    agg_t = torch.cat([u.new_zeros(H, n, d) if a is None else a
                       for a, n in zip(agg, sizes)], 1)
    return (agg_t.transpose(0, 1),
            torch.empty_like(alpha.t()).index_copy_(0, perm, alpha.t()))
