"""The checks and parsing of :class:`~torch_geometric_hgt.HGTConv`'s
arguments: metadata, node features and edges per type (index tensors,
torch sparse adjacencies or ``torch_sparse.SparseTensor``), edge times."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.typing import Adj, EdgeType, NodeType
from torch_geometric.utils import is_sparse, to_edge_index

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.conv.explain import Edges


def lin_ready(lin: torch.nn.Module) -> bool:
    """Whether a (possibly lazy) linear has its weights."""
    return not isinstance(lin.weight, UninitializedParameter)


def check_metadata(metadata) -> Tuple[List[NodeType], List[EdgeType]]:
    """``metadata`` as ``(node_types, edge_types)`` lists, or a clear
    error."""
    if not (isinstance(metadata, (tuple, list)) and len(metadata) == 2):
        raise TypeError(f"'metadata' must be (node_types, edge_types), as "
                        f"HeteroData.metadata() returns (got {metadata!r})")
    node_types = list(metadata[0])
    edge_types = [tuple(et) for et in metadata[1]]
    if len(set(node_types)) != len(node_types):
        raise ValueError(f"'metadata' names a node type twice: {node_types}")
    if len(set(edge_types)) != len(edge_types):
        raise ValueError(f"'metadata' names an edge type twice: "
                         f"{edge_types}")
    for et in edge_types:
        if len(et) != 3 or et[0] not in node_types or \
                et[2] not in node_types:
            raise ValueError(f"'metadata' edge type {et} must be (source, "
                             f"relation, destination) with both node types "
                             f"in {node_types}")
    return node_types, edge_types


def check_arguments(in_channels, out_channels: int, metadata, heads: int,
                    dropout: float, use_RTE: bool
                    ) -> Tuple[List[NodeType], List[EdgeType],
                               Dict[NodeType, int]]:
    """The constructor's arguments checked: ``(node_types, edge_types,
    in_channels per node type)``."""
    V.check_positive_int('out_channels', out_channels)
    V.check_positive_int('heads', heads)
    if out_channels % heads != 0:
        raise ValueError(f"'out_channels' (got {out_channels}) must be "
                         f"divisible by the number of heads (got {heads})")
    node_types, edge_types = check_metadata(metadata)
    if isinstance(in_channels, dict):
        if set(in_channels) != set(node_types):
            raise ValueError(f"'in_channels' must have one entry per node "
                             f"type {node_types} (got {list(in_channels)})")
    else:
        in_channels = {nt: in_channels for nt in node_types}
    for nt, size in in_channels.items():
        if size != -1:
            V.check_positive_int(f"in_channels['{nt}']", size)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
    sizes = set(in_channels.values())
    if use_RTE and (len(sizes) != 1 or -1 in sizes):
        raise ValueError(f"'use_RTE=True' needs one int 'in_channels' for "
                         f"every node type (got {in_channels})")
    return node_types, edge_types, in_channels


def node_features(layer, x_dict: Dict[NodeType, Tensor]
                   ) -> Dict[NodeType, Tensor]:
    """The metadata's node types present in ``x_dict``, in metadata
    order (as PyG's layer orders them); other keys are ignored, as
    there."""
    if not isinstance(x_dict, dict):
        raise TypeError(f"'x_dict' must be a dict of node features (got "
                        f"{type(x_dict).__name__})")
    xs = {nt: x_dict[nt] for nt in layer.node_types if nt in x_dict}
    device = None
    for nt, x in xs.items():
        V.check_tensor(f"x_dict['{nt}']", x, ndim=2)
        size = layer.kqv_lin.lins[nt].in_channels
        if size != -1 and x.size(1) != size:
            raise ValueError(f"x_dict['{nt}'] has {x.size(1)} "
                             f"features but in_channels['{nt}'] is "
                             f"{size}")
        if device is not None and x.device != device:
            raise ValueError(f"'x_dict' mixes devices ({device} and "
                             f"{x.device} for '{nt}')")
        device = x.device
    return xs


def edge_inputs(layer, xs: Dict[NodeType, Tensor],
                edge_index_dict: Dict[EdgeType, Adj],
                edge_time_dict: Optional[Dict[EdgeType, Tensor]]) -> Edges:
    """``(edge_index [2, E], edge_time [E] or None)`` per edge type of
    the call, checked against the metadata and the node counts."""
    if not isinstance(edge_index_dict, dict):
        raise TypeError(f"'edge_index_dict' must be a dict of edge "
                        f"indices (got {type(edge_index_dict).__name__})")
    if edge_time_dict is not None and not layer.use_RTE:
        raise ValueError("'edge_time_dict' is given but the layer was "
                         "built with use_RTE=False")
    out, checks = {}, []
    for et, adj in edge_index_dict.items():
        if et not in layer.edge_types_map:
            raise ValueError(f"'edge_index_dict' has edge type {et}, "
                             f"which is not in the metadata "
                             f"{layer.edge_types}")
        for nt in (et[0], et[2]):
            if nt not in xs:
                raise ValueError(f"'edge_index_dict' has edge type {et} "
                                 f"but 'x_dict' has no '{nt}'")
        n_src, n_dst = xs[et[0]].size(0), xs[et[2]].size(0)
        if is_sparse(adj):
            if tuple(adj.size()) != (n_dst, n_src):
                raise ValueError(
                    f"'edge_index_dict[{et}]' is a sparse adjacency of "
                    f"size {tuple(adj.size())}, expected (num_dst, "
                    f"num_src) = {(n_dst, n_src)}")
            ei = to_edge_index(adj)[0].flip([0])
        else:
            V.check_tensor(f"edge_index_dict[{et}]", adj, ndim=2)
            if adj.size(0) != 2 or adj.is_floating_point() or \
                    adj.is_complex() or adj.dtype == torch.bool:
                raise ValueError(
                    f"'edge_index_dict[{et}]' must be an integer tensor "
                    f"of shape [2, num_edges] (got {adj.dtype} "
                    f"{list(adj.shape)})")
            ei = adj.long()
            checks.append((
                f"'edge_index_dict[{et}]' has an index out of range of "
                f"its source type '{et[0]}' ({n_src} nodes) or "
                f"destination type '{et[2]}' ({n_dst} nodes)",
                ((ei[0] < 0) | (ei[0] >= n_src) | (ei[1] < 0) |
                 (ei[1] >= n_dst)).any()))
        t = None
        if layer.use_RTE:
            t = edge_time(layer, edge_time_dict, et, ei.size(1), checks)
        out[et] = (ei, t)
    if layer.validate and checks and not V.is_compiling():
        bad = torch.stack([flag for _, flag in checks]).tolist()
        for (message, _), failed in zip(checks, bad):
            if failed:
                raise ValueError(message)
    return out


def edge_time(layer, edge_time_dict, et: EdgeType, num_edges: int,
              checks: List[Tuple[str, Tensor]]) -> Tensor:
    """``edge_time_dict[et]`` checked (its range check appended to
    ``checks``, to run with the others in one host sync)."""
    if edge_time_dict is None or et not in edge_time_dict:
        raise ValueError(f"'edge_time_dict' must hold the times of "
                         f"edge type {et} (use_RTE=True)")
    t = edge_time_dict[et]
    V.check_tensor(f"edge_time_dict[{et}]", t, ndim=1)
    if t.numel() != num_edges or t.is_floating_point():
        raise ValueError(f"'edge_time_dict[{et}]' must be an integer "
                         f"tensor of {num_edges} entries (got "
                         f"{t.dtype} {list(t.shape)})")
    t = t.long()
    checks.append((f"'edge_time_dict[{et}]' must be in [0, max_len="
                   f"{layer.max_len})", ((t < 0) |
                                        (t >= layer.max_len)).any()))
    return t


def one_edge_set(layer, edges: Edges, offset: Dict[NodeType, int],
                 device: torch.device
                 ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The call's edge types as one graph over the concatenated node rows
    (type ``nt`` from row ``offset[nt]``): ``(edge_index [2, E],
    edge_type [E], temporal-table row [E] or None)``, relation ``r`` the
    ``r``-th edge type of ``edges``."""
    src, dst, rel, times = [], [], [], []
    for r, (et, (ei, t)) in enumerate(edges.items()):
        src.append(ei[0] + offset[et[0]])
        dst.append(ei[1] + offset[et[2]])
        rel.append(torch.full_like(ei[0], r))
        if t is not None:
            times.append(t + layer.node_types.index(et[0]) * layer.max_len)
    empty = torch.empty(0, dtype=torch.long, device=device)
    edge_index = torch.stack([torch.cat(src or [empty]),
                              torch.cat(dst or [empty])])
    rows = torch.cat(times or [empty]) if layer.use_RTE else None
    return edge_index, torch.cat(rel or [empty]), rows
