"""PyG's :class:`torch_geometric.loader.NeighborLoader` over our
:class:`~torch_geometric_hgt.sampler.NeighborSampler`: PyG's loader and
batches, sampling without pyg-lib or torch-sparse."""
from typing import Callable, Dict, List, Optional, Union

import torch
from torch_geometric.loader import NeighborLoader as PyGNeighborLoader
from torch_geometric.sampler.base import SubgraphType
from torch_geometric.typing import EdgeType, InputNodes, OptTensor

from torch_geometric_hgt.loader.utils import (check_input_nodes,
                                              default_neighbor_sampler)
from torch_geometric_hgt.sampler import NeighborSampler
from torch_geometric_hgt.sampler.graph import GraphData


class NeighborLoader(PyGNeighborLoader):
    r"""Mini-batches by neighbour sampling: PyG's
    :class:`torch_geometric.loader.NeighborLoader`, every argument and
    field of its batches, with :class:`~torch_geometric_hgt.sampler.
    NeighborSampler` as the default ``neighbor_sampler``, so that it runs on
    a registry install (no pyg-lib or torch-sparse), on CPU or CUDA
    (sampling runs where ``data``'s edges are).

    At hop :math:`h`, every node reached at hop :math:`h - 1` (the seeds at
    hop 0) draws ``num_neighbors[h]`` of its in-neighbours per edge type
    (see :class:`~torch_geometric_hgt.sampler.NeighborSampler`); a batch
    holds the nodes reached, seeds first, and the edges drawn.

    Args:
        data (Data or HeteroData or Tuple[FeatureStore, GraphStore]): The
            graph.
        num_neighbors (List[int] or Dict[Tuple[str, str, str], List[int]]):
            Neighbours drawn per node and hop, for every edge type or per
            edge type; :obj:`-1` takes all.
        input_nodes (torch.Tensor or str or Tuple[str, torch.Tensor]): The
            seeds: indices or a mask, with their node type on heterogeneous
            graphs (:obj:`None` for all nodes). (default: :obj:`None`)
        input_time (torch.Tensor, optional): The seeds' times, instead of
            their ``time_attr``. (default: :obj:`None`)
        replace (bool, optional): Draw with replacement.
            (default: :obj:`False`)
        subgraph_type (SubgraphType or str, optional): :obj:`"directional"`,
            :obj:`"bidirectional"` or :obj:`"induced"`.
            (default: :obj:`"directional"`)
        disjoint (bool, optional): A separate subgraph per seed, with
            ``batch`` telling them apart. (default: :obj:`False`)
        temporal_strategy (str, optional): :obj:`"uniform"` or
            :obj:`"last"`. (default: :obj:`"uniform"`)
        time_attr (str, optional): Node- or edge-level attribute holding
            times: no neighbour later than its seed. (default: :obj:`None`)
        weight_attr (str, optional): Edge attribute holding sampling
            weights. (default: :obj:`None`)
        transform (callable, optional): Applied to every mini-batch.
            (default: :obj:`None`)
        transform_sampler_output (callable, optional): Applied to every
            sampler output. (default: :obj:`None`)
        is_sorted (bool, optional): Edges already sorted by destination
            (and by time within each, with ``time_attr``).
            (default: :obj:`False`)
        filter_per_worker (bool, optional): Gather features in the workers.
            (default: :obj:`None`: PyG's choice)
        neighbor_sampler (NeighborSampler, optional): A sampler to reuse
            (any of PyG's kind). (default: :obj:`None`)
        directed (bool, optional): Deprecated; :obj:`False` means
            ``subgraph_type='induced'``. (default: :obj:`True`)
        generator (torch.Generator, optional): Orders the seeds and seeds
            the draws, so a run repeats for a given ``num_workers``.
            (default: :obj:`None`: torch's global generator)
        **kwargs (optional): Arguments of
            :class:`torch.utils.data.DataLoader`, such as ``batch_size``,
            ``shuffle``, ``drop_last`` or ``num_workers``.

    Shapes:
        - **output:** PyG's batch: a :class:`~torch_geometric.data.Data` or
          :class:`~torch_geometric.data.HeteroData` with the sampled nodes'
          and edges' attributes, ``n_id``, ``e_id``, ``input_id``,
          ``batch_size``, ``num_sampled_nodes``, ``num_sampled_edges``
          (and ``batch`` where disjoint, ``seed_time`` where temporal).
    """
    def __init__(
        self,
        data: GraphData,
        num_neighbors: Union[List[int], Dict[EdgeType, List[int]]],
        input_nodes: InputNodes = None,
        input_time: OptTensor = None,
        replace: bool = False,
        subgraph_type: Union[SubgraphType, str] = 'directional',
        disjoint: bool = False,
        temporal_strategy: str = 'uniform',
        time_attr: Optional[str] = None,
        weight_attr: Optional[str] = None,
        transform: Optional[Callable] = None,
        transform_sampler_output: Optional[Callable] = None,
        is_sorted: bool = False,
        filter_per_worker: Optional[bool] = None,
        neighbor_sampler: Optional[NeighborSampler] = None,
        directed: bool = True,
        generator: Optional[torch.Generator] = None,
        **kwargs,
    ):
        if neighbor_sampler is None:
            neighbor_sampler = default_neighbor_sampler(
                data, num_neighbors, subgraph_type=subgraph_type,
                replace=replace, disjoint=disjoint,
                temporal_strategy=temporal_strategy, time_attr=time_attr,
                weight_attr=weight_attr, is_sorted=is_sorted,
                directed=directed, generator=generator,
                num_workers=kwargs.get('num_workers', 0))
        if isinstance(neighbor_sampler, NeighborSampler):
            check_input_nodes(neighbor_sampler, input_nodes)
        super().__init__(
            data, num_neighbors, input_nodes=input_nodes,
            input_time=input_time, time_attr=time_attr, transform=transform,
            transform_sampler_output=transform_sampler_output,
            filter_per_worker=filter_per_worker,
            neighbor_sampler=neighbor_sampler, generator=generator, **kwargs)
