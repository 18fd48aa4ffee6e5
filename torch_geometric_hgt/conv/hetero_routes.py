"""The two routes of :class:`~torch_geometric_hgt.HGTConv` (node types as
consecutive row blocks, one edge set): the edge phase between PyG's
modules, or the ``'ultrafast'`` whole-layer Function."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import EdgeType, NodeType

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.conv.explain import Edges
from torch_geometric_hgt.conv.hetero_inputs import lin_ready
from torch_geometric_hgt.functional import (UpdateWeights, dispatch,
                                            hgt_attention, hgt_update)
from torch_geometric_hgt.functional.backends.pooled_layer import (
    LayerWeights, run_layer)
from torch_geometric_hgt.functional.linear import (concat_linear,
                                                   query_fold,
                                                   temporal_table)
from torch_geometric_hgt.functional.plan import PairPlan

#: ``(rows per node block, target block of each relation)``
Blocks = Tuple[List[int], List[int]]
Route = Tuple[Dict[NodeType, Tensor], Tensor]


def relation_weights(conv, edge_types: List[EdgeType]
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """``A [R, H, d, d]``, ``mu [R, H]``, ``M [R, H, d, d]`` from
    ``k_rel``, ``p_rel``, ``v_rel``, relation ``r`` = ``edge_types[r]``
    (only those ``p_rel`` get gradients, as in PyG)."""
    H, d = conv.heads, conv.out_channels // conv.heads
    ids = torch.tensor([conv.edge_types_map[et] for et in edge_types],
                       dtype=torch.long, device=conv.k_rel.weight.device)
    att, msg = (w.view(H, -1, d, d).index_select(1, ids).transpose(0, 1)
                .contiguous() for w in (conv.k_rel.weight, conv.v_rel.weight))
    pri = torch.cat([conv.p_rel['__'.join(et)] for et in edge_types] or
                    [att.new_empty(0, H)])
    return att, pri, msg


def pooled_applies(conv, xs: Dict[NodeType, Tensor], num_edges: int,
                   mask: Optional[Tensor]) -> bool:
    """Whether the call runs the whole-layer Function: ``layer_route``'s
    ``'pooled'`` plus one input size and dtype, every node type a
    destination (so each gets its output and ``out_lin`` gradient, as in
    PyG), no masks, no budget."""
    x = next(iter(xs.values()))
    if mask is not None or conv.memory_budget is not None or \
            dispatch.select_backend(conv.backend, x.device,
                                    num_edges) != 'ultrafast':
        return False
    lins = [conv.kqv_lin.lins[nt] for nt in xs]
    return (all(lin_ready(lin) for lin in lins)
            and len({(t.size(1), t.dtype) for t in xs.values()}) == 1
            and set(xs) <= conv.dst_node_types
            and dispatch.layer_route('ultrafast', x, conv.use_RTE,
                                     conv.pool is not None,
                                     lins[0].weight.dtype) == 'pooled')


def pooled_route(conv, xs: Dict[NodeType, Tensor], edges: Edges,
                 edge_index: Tensor, edge_type: Tensor,
                 blocks: Blocks) -> Route:
    """``(out_dict, alpha [E, H])`` by the whole-layer Function."""
    x = torch.cat(list(xs.values()))
    att, pri, msg = relation_weights(conv, list(edges))
    kqv = [conv.kqv_lin.lins[nt] for nt in xs]
    out = [conv.out_lin.lins[nt] for nt in xs]
    norms = [conv.norms[nt] for nt in xs] if conv.norms else []

    def stacked(mods, name):
        return torch.stack([getattr(m, name) for m in mods]) if mods \
            else None
    weights = LayerWeights(
        stacked(kqv, 'weight'), stacked(kqv, 'bias'), query_fold(att, pri),
        msg, stacked(out, 'weight'), stacked(out, 'bias'),
        torch.cat([conv.skip[nt] for nt in xs])
        if x.size(1) == conv.out_channels else None,
        stacked(norms, 'weight'), stacked(norms, 'bias'))
    plan = PairPlan.build('blocks', edge_index, edge_type, x.size(0),
                          len(edges), blocks)
    chunk = dispatch.edges_per_chunk(conv.chunk_size, 'ultrafast',
                                     x.device, edge_type.numel())
    y, alpha = run_layer(x, weights, blocks[0], plan, conv.heads, chunk,
                         conv.drop.p if conv.training else 0.0,
                         norms[0].eps if norms else 1e-5, conv.pool)
    return dict(zip(xs, y.split(blocks[0]))), alpha


def edge_route(conv, xs: Dict[NodeType, Tensor], edges: Edges,
               edge_index: Tensor, edge_type: Tensor,
               rows: Optional[Tensor], mask: Optional[Tensor],
               blocks: Blocks) -> Route:
    """``(out_dict, alpha [E, H])`` by ``kqv_lin``, ``hgt_attention``
    (``rows``: each edge's temporal-table row), ``out_lin``,
    ``hgt_update``."""
    F_, H, sizes = conv.out_channels, conv.heads, blocks[0]
    N = sum(sizes)
    k, q, v = kqv(conv, xs).view(N, 3, H, F_ // H).unbind(1)
    rte = (rte_table(conv), rows) if conv.use_RTE else None
    att, pri, msg = relation_weights(conv, list(edges))
    agg, alpha = hgt_attention(
        q, k, v, edge_index, edge_type, att, pri, msg, rte=rte,
        edge_mask=mask, backend=conv.backend, chunk_size=conv.chunk_size,
        memory_budget=conv.memory_budget, blocks=blocks)
    agg = F.gelu(agg.to(q.dtype).reshape(N, F_))
    a_dict = conv.out_lin({nt: a for nt, a in zip(xs, agg.split(sizes))
                           if nt in conv.dst_node_types})
    out_dict = {}
    for nt, a in a_dict.items():
        gate = conv.skip[nt] if a.size(-1) == xs[nt].size(-1) else None
        norm = conv.norms[nt] if conv.norms is not None else None
        out_dict[nt] = hgt_update(
            a, xs[nt], None,
            UpdateWeights(gate, *((norm.weight, norm.bias, norm.eps)
                                  if norm is not None else
                                  (None, None, 1e-5)), conv.drop.p),
            conv.training)
    return out_dict, alpha


def kqv(conv, xs: Dict[NodeType, Tensor]) -> Tensor:
    """``kqv_lin`` of every type, rows in ``xs`` order: ``[N, 3 F]``."""
    lins = [conv.kqv_lin.lins[nt] for nt in xs]
    if not all(lin_ready(lin) for lin in lins) or V.is_compiling():
        # PyG's lazy initialisation fails on types without nodes: those
        # wait for a call that has some
        out = conv.kqv_lin({nt: x for nt, x in xs.items() if x.size(0)
                            or lin_ready(conv.kqv_lin.lins[nt])})
        like = next(iter(out.values()), next(iter(xs.values())))
        return torch.cat([
            out[nt] if nt in out else
            like.new_empty(0, 3 * conv.out_channels) for nt in xs
        ])
    return concat_linear(list(xs.values()), [lin.weight for lin in lins],
                         [lin.bias for lin in lins])


def rte_table(conv) -> Tensor:
    """:func:`~torch_geometric_hgt.functional.linear.temporal_table` of
    ``kqv_lin``'s K and V rows, node types in metadata order."""
    F_ = conv.out_channels
    lins = [conv.kqv_lin.lins[nt] for nt in conv.node_types]
    return temporal_table(conv.emb.table(),
                          torch.stack([lin.weight[:F_] for lin in lins]),
                          torch.stack([lin.weight[2 * F_:] for lin in lins]))
