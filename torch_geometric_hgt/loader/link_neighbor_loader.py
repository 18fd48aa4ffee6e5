"""PyG's :class:`torch_geometric.loader.LinkNeighborLoader` over our
:class:`~torch_geometric_hgt.sampler.NeighborSampler`: link prediction
mini-batches without pyg-lib or torch-sparse."""
from typing import Callable, Dict, List, Optional, Union

import torch
from torch_geometric.loader import \
    LinkNeighborLoader as PyGLinkNeighborLoader
from torch_geometric.sampler import NegativeSampling
from torch_geometric.sampler.base import SubgraphType
from torch_geometric.typing import EdgeType, InputEdges, OptTensor

from torch_geometric_hgt.loader.utils import (check_edge_label_index,
                                              default_neighbor_sampler)
from torch_geometric_hgt.sampler import NeighborSampler
from torch_geometric_hgt.sampler.graph import GraphData


class LinkNeighborLoader(PyGLinkNeighborLoader):
    r"""Link-level mini-batches by neighbour sampling: PyG's
    :class:`torch_geometric.loader.LinkNeighborLoader`, every argument and
    field of its batches, with :class:`~torch_geometric_hgt.sampler.
    NeighborSampler` as the default ``neighbor_sampler``, so that it runs on
    a registry install (no pyg-lib or torch-sparse), on CPU or CUDA.

    A batch takes ``batch_size`` edges of ``edge_label_index`` (and, with
    ``neg_sampling``, negatives drawn by PyG's
    :class:`~torch_geometric.sampler.NegativeSampling`: ``"binary"`` random
    pairs labelled 0, or ``"triplet"`` random destinations per source),
    samples the neighbourhood of their endpoints, and labels the edges in
    the batch's local indices (``edge_label_index``, ``edge_label``; or
    ``src_index``, ``dst_pos_index``, ``dst_neg_index``).

    Args:
        data (Data or HeteroData or Tuple[FeatureStore, GraphStore]): The
            graph.
        num_neighbors (List[int] or Dict[Tuple[str, str, str], List[int]]):
            Neighbours drawn per node and hop; :obj:`-1` takes all.
        edge_label_index (torch.Tensor or EdgeType or Tuple[EdgeType,
            torch.Tensor], optional): The edges to predict, with their edge
            type on heterogeneous graphs (:obj:`None`: all edges of the
            type). (default: :obj:`None`)
        edge_label (torch.Tensor, optional): Their labels.
            (default: :obj:`None`)
        edge_label_time (torch.Tensor, optional): Their times (needs
            ``time_attr``). (default: :obj:`None`)
        replace (bool, optional): Draw with replacement.
            (default: :obj:`False`)
        subgraph_type (SubgraphType or str, optional): :obj:`"directional"`,
            :obj:`"bidirectional"` or :obj:`"induced"`.
            (default: :obj:`"directional"`)
        disjoint (bool, optional): A separate subgraph per edge.
            (default: :obj:`False`)
        temporal_strategy (str, optional): :obj:`"uniform"` or
            :obj:`"last"`. (default: :obj:`"uniform"`)
        neg_sampling (NegativeSampling, optional): How to draw negatives.
            (default: :obj:`None`)
        neg_sampling_ratio (int or float, optional): Deprecated in PyG for
            ``neg_sampling``; binary negatives per positive.
            (default: :obj:`None`)
        time_attr (str, optional): Node- or edge-level attribute holding
            times. (default: :obj:`None`)
        weight_attr (str, optional): Edge attribute holding sampling
            weights. (default: :obj:`None`)
        transform (callable, optional): Applied to every mini-batch.
            (default: :obj:`None`)
        transform_sampler_output (callable, optional): Applied to every
            sampler output. (default: :obj:`None`)
        is_sorted (bool, optional): Edges already sorted by destination.
            (default: :obj:`False`)
        filter_per_worker (bool, optional): Gather features in the workers.
            (default: :obj:`None`: PyG's choice)
        neighbor_sampler (NeighborSampler, optional): A sampler to reuse.
            (default: :obj:`None`)
        directed (bool, optional): Deprecated; :obj:`False` means
            ``subgraph_type='induced'``. (default: :obj:`True`)
        generator (torch.Generator, optional): Orders the edges and seeds
            the draws (PyG's negatives come from torch's global generator).
            (default: :obj:`None`)
        **kwargs (optional): Arguments of
            :class:`torch.utils.data.DataLoader`, such as ``batch_size``,
            ``shuffle`` or ``num_workers``.

    Shapes:
        - **output:** PyG's link batch: the sampled subgraph as in
          :class:`NeighborLoader` plus ``edge_label_index`` and
          ``edge_label`` (binary or none) or ``src_index``,
          ``dst_pos_index`` and ``dst_neg_index`` (triplet), ``input_id``.
    """
    def __init__(
        self,
        data: GraphData,
        num_neighbors: Union[List[int], Dict[EdgeType, List[int]]],
        edge_label_index: InputEdges = None,
        edge_label: OptTensor = None,
        edge_label_time: OptTensor = None,
        replace: bool = False,
        subgraph_type: Union[SubgraphType, str] = 'directional',
        disjoint: bool = False,
        temporal_strategy: str = 'uniform',
        neg_sampling: Optional[NegativeSampling] = None,
        neg_sampling_ratio: Optional[Union[int, float]] = None,
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
            check_edge_label_index(neighbor_sampler, data, edge_label_index)
        super().__init__(
            data, num_neighbors, edge_label_index=edge_label_index,
            edge_label=edge_label, edge_label_time=edge_label_time,
            neg_sampling=neg_sampling, neg_sampling_ratio=neg_sampling_ratio,
            time_attr=time_attr, transform=transform,
            transform_sampler_output=transform_sampler_output,
            filter_per_worker=filter_per_worker,
            neighbor_sampler=neighbor_sampler, generator=generator, **kwargs)
