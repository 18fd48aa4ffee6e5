"""Typed CSC adjacency of a :class:`~torch_geometric.data.HeteroData`,
built once per graph and cached, and the frontier expansion the samplers
share."""
import weakref
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType, NodeType


class CSC(NamedTuple):
    """In-edges of one edge type, grouped by destination.

    ``edges[colptr[v]:colptr[v + 1]]`` are the in-edges of destination
    ``v``, each as (source, position in ``edge_index``, i.e. ``e_id``): one
    row, so a sampler reads both with one gather.
    With node times, each group is sorted by source time, and ``key``
    (``v * num_times + rank of the source's time``) is ascending overall,
    so one :func:`torch.searchsorted` finds every group's time bound.
    """
    colptr: Tensor
    edges: Tensor  # [E, 2]
    key: Optional[Tensor]


class Graph(NamedTuple):
    """What the samplers read of a graph: node counts, one :class:`CSC` per
    edge type, node times (optional) and their sorted distinct values."""
    num_nodes: Dict[NodeType, int]
    csc: Dict[EdgeType, CSC]
    time: Optional[Dict[NodeType, Tensor]]
    times: Optional[Tensor]


# id(data) -> (weak reference, fingerprint, graph); HeteroData is not
# hashable, and an entry goes when its graph is collected
_CACHE: Dict[int, Tuple[weakref.ref, tuple, Graph]] = {}


def _fingerprint(data: HeteroData, time_attr: Optional[str]) -> tuple:
    """Changes whenever an edge index or time tensor is replaced or
    modified in place, so a cached :class:`Graph` is never stale."""
    parts: List[tuple] = [(time_attr,)]
    for et in data.edge_types:
        ei = data[et].edge_index
        parts.append((et, ei.data_ptr(), ei._version, tuple(ei.shape),
                      ei.device))
    for nt in data.node_types:
        parts.append((nt, data[nt].num_nodes))
        if time_attr is not None and time_attr in data[nt]:
            t = data[nt][time_attr]
            parts.append((t.data_ptr(), t._version, tuple(t.shape)))
    return tuple(parts)


def graph_of(data: HeteroData, time_attr: Optional[str] = None) -> Graph:
    """The :class:`Graph` of ``data``, built at the first call and reused
    while ``data``'s edge indices and times are unchanged."""
    key = _fingerprint(data, time_attr)
    hit = _CACHE.get(id(data))
    if hit is not None and hit[0]() is data and hit[1] == key:
        return hit[2]
    graph = build_graph(data, time_attr)
    ident = id(data)
    _CACHE[ident] = (weakref.ref(data, lambda _: _CACHE.pop(ident, None)),
                     key, graph)
    return graph


def build_graph(data: HeteroData, time_attr: Optional[str] = None) -> Graph:
    num_nodes = {nt: int(data[nt].num_nodes or 0) for nt in data.node_types}
    time = times = None
    if time_attr is not None:
        time = {}
        for nt in data.node_types:
            if time_attr not in data[nt]:
                raise ValueError(f"'time_attr' is '{time_attr}' but node "
                                 f"type '{nt}' has no such attribute")
            t = data[nt][time_attr]
            if t.dim() != 1 or t.numel() != num_nodes[nt] or \
                    t.is_floating_point() or t.is_complex():
                raise ValueError(f"data['{nt}'].{time_attr} must be an "
                                 f"integer tensor of {num_nodes[nt]} "
                                 f"entries (got {t.dtype} {list(t.shape)})")
            time[nt] = t.long()
        times = torch.unique(torch.cat(list(time.values())))
    csc = {}
    for et in data.edge_types:
        src, _, dst = et
        ei = data[et].edge_index
        if ei.dim() != 2 or ei.size(0) != 2 or ei.is_floating_point():
            raise ValueError(f"data[{et}].edge_index must be an integer "
                             f"tensor of shape [2, num_edges] (got "
                             f"{ei.dtype} {list(ei.shape)})")
        ei = ei.long()
        n_src, n_dst = num_nodes[src], num_nodes[dst]
        if ei.numel() and (ei[0].min() < 0 or ei[0].max() >= n_src or
                           ei[1].min() < 0 or ei[1].max() >= n_dst):
            raise ValueError(f"data[{et}].edge_index has an index out of "
                             f"range of '{src}' ({n_src} nodes) or '{dst}' "
                             f"({n_dst} nodes)")
        order = ei[1]
        if time is not None:
            rank = torch.searchsorted(times, time[src][ei[0]])
            order = ei[1] * times.numel() + rank
        order, perm = torch.sort(order, stable=True)
        colptr = torch.zeros(n_dst + 1, dtype=torch.long, device=ei.device)
        torch.cumsum(torch.bincount(ei[1], minlength=n_dst), 0,
                     out=colptr[1:])
        csc[et] = CSC(colptr, torch.stack([ei[0][perm], perm], 1),
                      order if time is not None else None)
    return Graph(num_nodes, csc, time, times)


def segments(start: Tensor, count: Tensor) -> Tuple[Tensor, Tensor]:
    """Positions ``start[i] .. start[i] + count[i] - 1`` of every ``i``,
    concatenated, and the ``i`` each belongs to."""
    owner = torch.repeat_interleave(
        torch.arange(count.numel(), device=count.device), count)
    shift = (start - torch.cumsum(count, 0) + count).index_select(0, owner)
    return torch.arange(owner.numel(), device=count.device) + shift, owner


def eligible(graph: Graph, et: EdgeType, nodes: Tensor,
             bound: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """``(start, count)`` of the in-edges of destinations ``nodes`` in edge
    type ``et`` whose source time is at most ``bound`` (all of them without
    times): they are the first ``count`` of each group."""
    csc = graph.csc[et]
    start = csc.colptr.index_select(0, nodes)
    if bound is None or csc.key is None:
        return start, csc.colptr.index_select(0, nodes + 1) - start
    rank = torch.searchsorted(graph.times, bound, right=True) - 1
    end = torch.searchsorted(csc.key, nodes * graph.times.numel() + rank,
                             right=True)
    return start, (end - start).clamp_min(0)
