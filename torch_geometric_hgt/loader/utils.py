"""Argument checks the loaders make before handing over to PyG's
:class:`~torch_geometric.loader.NodeLoader` and
:class:`~torch_geometric.loader.LinkLoader`, whose own checks are
assertions, so that bad input gets an error naming the argument."""
from typing import Any, Optional

import torch
from torch import Tensor

from torch_geometric_hgt.sampler import NeighborSampler
from torch_geometric_hgt.sampler.graph import GraphData, graph_device


def _check_ids(name: str, ids: Any, num_nodes: int, what: str) -> None:
    if ids is None:
        return
    ids = ids if isinstance(ids, Tensor) else torch.as_tensor(ids)
    if ids.dtype == torch.bool:
        if ids.numel() != num_nodes:
            raise ValueError(f"'{name}' is a mask of {ids.numel()} entries "
                             f"but {what} has {num_nodes} nodes")
        return
    if ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"'{name}' must hold integer node indices (got "
                        f"{ids.dtype})")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_nodes):
        raise ValueError(f"'{name}' has an index out of range of {what} "
                         f"({num_nodes} nodes)")


def check_input_nodes(sampler, input_nodes: Any) -> None:
    """``input_nodes`` names a node type of the graph and indices (or a
    mask) within it."""
    num_nodes = sampler.num_nodes
    if not isinstance(num_nodes, dict):
        _check_ids('input_nodes', input_nodes, num_nodes, 'the graph')
        return
    if isinstance(input_nodes, str):
        input_nodes = (input_nodes, None)
    if not (isinstance(input_nodes, (tuple, list)) and
            len(input_nodes) == 2 and isinstance(input_nodes[0], str)):
        raise TypeError(f"'input_nodes' must be a node type or (node type, "
                        f"indices or mask or None) (got {input_nodes!r})")
    nt, ids = input_nodes
    if nt not in num_nodes:
        raise ValueError(f"'input_nodes' names node type '{nt}', which is "
                         f"not in the graph {list(num_nodes)}")
    _check_ids('input_nodes', ids, num_nodes[nt], f"'{nt}'")


def check_edge_label_index(sampler, data: GraphData,
                           edge_label_index: Any) -> None:
    """``edge_label_index`` names an edge type of the graph (for
    heterogeneous graphs) and endpoints within its node types."""
    num_nodes = sampler.num_nodes
    if not isinstance(num_nodes, dict):
        if edge_label_index is not None:
            _check_pairs(edge_label_index, num_nodes, num_nodes, 'the graph',
                         'the graph')
        return
    if edge_label_index is None:
        raise ValueError("'edge_label_index' must name an edge type of a "
                         "heterogeneous graph")
    if isinstance(edge_label_index, (tuple, list)) and \
            isinstance(edge_label_index[0], str):
        et, index = tuple(edge_label_index), None
    elif isinstance(edge_label_index, (tuple, list)) and \
            len(edge_label_index) == 2:
        et, index = edge_label_index
        et = tuple(et) if isinstance(et, (tuple, list)) else et
    else:
        raise TypeError(f"'edge_label_index' must be an edge type or (edge "
                        f"type, [2, N] tensor or None) (got "
                        f"{edge_label_index!r})")
    if isinstance(et, tuple) and len(et) == 2:
        # (source, destination): PyG finds the one relation between them,
        # or defaults to 'to'
        et = next((t for t in sampler.edge_types
                   if (t[0], t[2]) == et), (et[0], 'to', et[1]))
    if not isinstance(et, tuple) or len(et) != 3 or \
            et[0] not in num_nodes or et[2] not in num_nodes:
        raise ValueError(f"'edge_label_index' names edge type {et!r}, "
                         f"whose node types are not in the graph "
                         f"{list(num_nodes)}")
    if index is None and et not in sampler.edge_types:
        raise ValueError(f"'edge_label_index' names edge type {et!r}, which "
                         f"is not in the graph {sampler.edge_types}")
    if index is not None:
        _check_pairs(index, num_nodes[et[0]], num_nodes[et[2]], f"'{et[0]}'",
                     f"'{et[2]}'")


def _check_pairs(index: Any, n_src: int, n_dst: int, src: str,
                 dst: str) -> None:
    if not isinstance(index, Tensor) or index.dim() != 2 or \
            index.size(0) != 2 or index.is_floating_point():
        raise TypeError(f"'edge_label_index' must be an integer tensor of "
                        f"shape [2, N] (got {index!r})")
    if index.numel() and (int(index.min()) < 0 or
                          int(index[0].max()) >= n_src or
                          int(index[1].max()) >= n_dst):
        raise ValueError(f"'edge_label_index' has an index out of range of "
                         f"{src} ({n_src} nodes) or {dst} ({n_dst} nodes)")


def sampler_generator(data: GraphData,
                      generator: Optional[torch.Generator]
                      ) -> Optional[torch.Generator]:
    """The loader's ``generator`` (which also orders the seeds, on the CPU)
    for the sampler, or one seeded from it on the device of the graph's
    edges."""
    if generator is None:
        return None
    device = graph_device(data)
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(2**62, (), generator=generator))
    return torch.Generator(device).manual_seed(seed)


def default_neighbor_sampler(data: GraphData, num_neighbors, *,
                             generator: Optional[torch.Generator],
                             num_workers: int, **kwargs) -> NeighborSampler:
    """The sampler PyG's neighbour loaders would build, ours: PyG's
    arguments ``kwargs``, shared memory for workers, and a generator on
    the graph's device."""
    return NeighborSampler(data, num_neighbors,
                           share_memory=num_workers > 0,
                           generator=sampler_generator(data, generator),
                           **kwargs)
