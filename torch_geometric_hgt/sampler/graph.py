"""What the samplers read of a graph: typed CSC adjacency with global edge
ids, node counts, times and weights, from a :class:`~torch_geometric.data.
Data`, a :class:`~torch_geometric.data.HeteroData` or a
``(FeatureStore, GraphStore)`` pair, built once by each sampler."""
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import (Data, FeatureStore, GraphStore, HeteroData,
                                  remote_backend_utils)
from torch_geometric.sampler.utils import sort_csc, to_csc
from torch_geometric.typing import EdgeType, NodeType

from torch_geometric_hgt.sampler.draws import NodeSet, segments

#: the node and edge type under which a homogeneous graph is sampled
NODE: NodeType = 'node'
EDGE: EdgeType = (NODE, 'to', NODE)

GraphData = Union[Data, HeteroData, Tuple[FeatureStore, GraphStore]]


class Relation(NamedTuple):
    """In-edges of one edge type, grouped by destination.

    ``edges[colptr[v]:colptr[v + 1]]`` are the in-edges of destination
    ``v``, each as (source, edge id in the graph's own edge order): one row,
    so a sampler reads both with one gather. Where the edge type has times
    (its source type's node times, or its own edge times), each group is
    sorted by time and ``key`` (``v * len(times) + rank of the time``) is
    ascending overall, so one :func:`torch.searchsorted` finds every
    group's time bound. ``weight`` follows the CSC order.
    """
    colptr: Tensor
    edges: Tensor  # [E, 2]
    key: Optional[Tensor]
    weight: Optional[Tensor]


class Graph(NamedTuple):
    """Node counts, one :class:`Relation` per edge type, node times of the
    types that have them, and the sorted distinct time values."""
    num_nodes: Dict[NodeType, int]
    rel: Dict[EdgeType, Relation]
    node_time: Optional[Dict[NodeType, Tensor]]
    times: Optional[Tensor]
    device: torch.device

    @property
    def temporal(self) -> bool:
        return self.times is not None


def graph_device(data: GraphData) -> torch.device:
    """Where ``data``'s edges are: the samplers run there."""
    if isinstance(data, (Data, HeteroData)):
        for store in data.edge_stores:
            if 'edge_index' in store:
                return store.edge_index.device
    return torch.device('cpu')


def _times(data: GraphData, time_attr: Optional[str]
           ) -> Tuple[Dict, Dict]:
    """``(node times per node type, edge times per edge type)`` of
    ``time_attr``; one of them is empty."""
    if time_attr is None:
        return {}, {}
    if isinstance(data, Data):
        if data.is_node_attr(time_attr):
            return {NODE: data[time_attr]}, {}
        if data.is_edge_attr(time_attr):
            return {}, {EDGE: data[time_attr]}
        raise ValueError(f"'time_attr' is '{time_attr}', which is neither a "
                         f"node-level nor an edge-level attribute of 'data'")
    if isinstance(data, HeteroData):
        node = {nt: s[time_attr] for nt, s in data.node_items()
                if time_attr in s}
        edge = {et: s[time_attr] for et, s in data.edge_items()
                if time_attr in s}
    else:
        feature_store, _ = data
        attrs = [a for a in feature_store.get_all_tensor_attrs()
                 if a.attr_name == time_attr]
        for a in attrs:
            a.index = None
        values = feature_store.multi_get_tensor(attrs) if attrs else []
        node, edge = {}, {}
        for a, v in zip(attrs, values):
            group = NODE if a.group_name is None else a.group_name
            (edge if isinstance(group, tuple) else node)[group] = v
    if node and edge:
        raise ValueError(f"'time_attr' is '{time_attr}', which holds both "
                         f"node-level and edge-level times")
    if not node and not edge:
        raise ValueError(f"'time_attr' is '{time_attr}', which is neither a "
                         f"node-level nor an edge-level attribute of 'data'")
    return node, edge


def _csc(data: GraphData, is_sorted: bool, node_time: Dict,
         edge_time: Dict, device: torch.device
         ) -> Dict[EdgeType, Tuple[Tensor, Tensor, Optional[Tensor]]]:
    """``{edge type: (colptr, row, perm)}``, each group sorted by time
    where the edge type has times (PyG's own conversion)."""
    if isinstance(data, Data):
        return {EDGE: to_csc(data, device, is_sorted=is_sorted,
                             src_node_time=node_time.get(NODE),
                             edge_time=edge_time.get(EDGE))}
    if isinstance(data, HeteroData):
        return {et: to_csc(store, device, is_sorted=is_sorted,
                           src_node_time=node_time.get(et[0]),
                           edge_time=edge_time.get(et))
                for et, store in data.edge_items()}
    _, graph_store = data
    row, colptr, perm = graph_store.csc()
    if not isinstance(row, dict):
        row, colptr, perm = {EDGE: row}, {EDGE: colptr}, {EDGE: perm}
    out = {}
    for et in row:
        r, ptr, p = row[et], colptr[et], perm.get(et)
        t = node_time.get(et[0]), edge_time.get(et)
        if t != (None, None) and not is_sorted:
            # the store's CSC is sorted by destination only: sort each group
            # by time as well
            col = torch.repeat_interleave(
                torch.arange(ptr.numel() - 1, device=ptr.device),
                ptr.diff())
            eid = torch.arange(r.numel(), device=r.device) if p is None \
                else p
            if t[1] is not None:
                t = (None, t[1][eid])
            r, _, order = sort_csc(r, col, t[0], t[1])
            p = eid[order]
        out[et] = (ptr.to(device), r.to(device),
                   None if p is None else p.to(device))
    return out


def _num_nodes(data: GraphData, edge_types: List[EdgeType]
               ) -> Dict[NodeType, int]:
    if isinstance(data, Data):
        return {NODE: int(data.num_nodes or 0)}
    if isinstance(data, HeteroData):
        return {nt: int(data[nt].num_nodes or 0) for nt in data.node_types}
    feature_store, graph_store = data
    attrs = graph_store.get_all_edge_attrs()
    if edge_types == [EDGE]:
        return {NODE: int(max(attrs[0].size))}
    types = {a.group_name for a in feature_store.get_all_tensor_attrs()
             if isinstance(a.group_name, str)}
    types |= {t for et in edge_types for t in (et[0], et[2])}
    return {nt: int(remote_backend_utils.size(feature_store, graph_store,
                                              nt)) for nt in sorted(types)}


def _weights(data: GraphData, weight_attr: Optional[str],
             edge_types: List[EdgeType]) -> Dict[EdgeType, Tensor]:
    if weight_attr is None:
        return {}
    if isinstance(data, tuple):
        raise ValueError("'weight_attr' is not supported for "
                         "'(FeatureStore, GraphStore)' data, which holds "
                         "no edge attributes")
    if isinstance(data, Data):
        if not data.is_edge_attr(weight_attr):
            raise ValueError(f"'weight_attr' is '{weight_attr}', which is "
                             f"not an edge attribute of 'data'")
        return {EDGE: data[weight_attr]}
    out = {et: data[et][weight_attr] for et in edge_types
           if weight_attr in data[et]}
    if not out:
        raise ValueError(f"'weight_attr' is '{weight_attr}', which no edge "
                         f"type of 'data' has")
    return out


def build_graph(data: GraphData, time_attr: Optional[str] = None,
                weight_attr: Optional[str] = None, is_sorted: bool = False,
                share_memory: bool = False) -> Graph:
    """The :class:`Graph` of ``data``; ``share_memory`` puts its CPU
    tensors in shared memory, for loader workers."""
    device = graph_device(data)
    node_time, edge_time = _times(data, time_attr)
    csc = _csc(data, is_sorted, node_time, edge_time, device)
    num_nodes = _num_nodes(data, list(csc))
    weights = _weights(data, weight_attr, list(csc))
    node_time = {nt: t.to(device) for nt, t in node_time.items()}
    times = None
    if node_time or edge_time:
        for name, t in list(node_time.items()) + list(edge_time.items()):
            if t.dim() != 1 or t.is_complex() or t.dtype == torch.bool:
                raise ValueError(f"'time_attr': the times of {name!r} must be "
                                 f"a 1-d real tensor (got {t.dtype} "
                                 f"{list(t.shape)})")
        times = torch.unique(torch.cat(
            [t.to(device) for t in node_time.values()] +
            [t.to(device) for t in edge_time.values()]))
    rel = {}
    for et, (colptr, row, perm) in csc.items():
        colptr, row = colptr.long(), row.long()
        n_src, n_dst = num_nodes.get(et[0], 0), num_nodes.get(et[2], 0)
        if colptr.numel() != n_dst + 1 or (row.numel() and (
                row.min() < 0 or row.max() >= n_src)):
            raise ValueError(f"'data': the edges of {et} do not fit {n_src} "
                             f"'{et[0]}' and {n_dst} '{et[2]}' nodes")
        eid = torch.arange(row.numel(), device=device) if perm is None \
            else perm.long()
        key = None
        time = None
        if et[0] in node_time:
            time = node_time[et[0]].index_select(0, row)
        elif et in edge_time:
            time = edge_time[et].to(device).index_select(0, eid)
        if time is not None:
            col = torch.repeat_interleave(
                torch.arange(n_dst, device=device), colptr.diff())
            key = col * times.numel() + torch.searchsorted(times, time)
            if key.numel() > 1 and bool((key[1:] < key[:-1]).any()):
                raise ValueError("'is_sorted' is True but the edges of "
                                 f"{et} are not sorted by time within each "
                                 f"destination's neighbourhood")
        weight = None
        if et in weights:
            weight = weights[et].to(device).index_select(0, eid)
        rel[et] = Relation(colptr, torch.stack([row, eid], 1), key, weight)
        if share_memory and device.type == 'cpu':
            for t in rel[et]:
                if t is not None:
                    t.share_memory_()
    return Graph(num_nodes, rel, node_time if times is not None else None,
                 times, device)


def eligible(graph: Graph, et: EdgeType, nodes: Tensor,
             bound: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """``(start, count)`` of the in-edges of destinations ``nodes`` in edge
    type ``et`` whose time is at most ``bound`` (all of them where ``et``
    has no times): they are the first ``count`` of each group."""
    rel = graph.rel[et]
    start = rel.colptr.index_select(0, nodes)
    if bound is None or rel.key is None:
        return start, rel.colptr.index_select(0, nodes + 1) - start
    rank = torch.searchsorted(graph.times, bound.to(graph.times.dtype),
                              right=True) - 1
    end = torch.searchsorted(rel.key, nodes * graph.times.numel() + rank,
                             right=True)
    return start, (end - start).clamp_min(0)


def induced_edges(graph: Graph, node: Dict[NodeType, Tensor],
                  sets: Dict[NodeType, NodeSet],
                  bound: Optional[Dict[NodeType, Tensor]] = None) -> dict:
    """``row``, ``col``, ``edge`` of every edge between sampled nodes (in
    the destinations' order), with times at most the destination's
    ``bound`` where given."""
    row, col, edge = {}, {}, {}
    for et, rel in graph.rel.items():
        dst = node[et[2]]
        start, count = eligible(graph, et, dst,
                                None if bound is None else bound[et[2]])
        pos, owner = segments(start, count)
        src, e = rel.edges.index_select(0, pos).unbind(1)
        src = sets[et[0]].local(src)
        keep = src >= 0
        row[et], col[et], edge[et] = src[keep], owner[keep], e[keep]
    return dict(row=row, col=col, edge=edge)
