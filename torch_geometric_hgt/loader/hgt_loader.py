"""PyG's :class:`torch_geometric.loader.HGTLoader` over our
:class:`~torch_geometric_hgt.sampler.HGTSampler` (HGSampling without
torch-sparse, on CPU or CUDA), and its link-level sibling."""
from typing import Callable, Optional, Union

import torch
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import NegativeSampling
from torch_geometric.typing import InputEdges, InputNodes, OptTensor

from torch_geometric_hgt.loader.utils import (check_edge_label_index,
                                              check_input_nodes,
                                              sampler_generator)
from torch_geometric_hgt.sampler import HGTSampler
from torch_geometric_hgt.sampler.graph import GraphData
from torch_geometric_hgt.sampler.hgt_sampler import NumSamples


def _sampler(data, num_samples, is_sorted, max_neighbors, time_attr,
             generator, kwargs) -> HGTSampler:
    return HGTSampler(data, num_samples, is_sorted=is_sorted,
                      share_memory=kwargs.get('num_workers', 0) > 0,
                      max_neighbors=max_neighbors, time_attr=time_attr,
                      generator=sampler_generator(data, generator))


class HGTLoader(NodeLoader):
    r"""Mini-batches by HGSampling (`"Heterogeneous Graph Transformer"
    <https://arxiv.org/abs/2003.01332>`_, Algorithm 1): PyG's
    :class:`torch_geometric.loader.HGTLoader`, its arguments and batches,
    over :class:`~torch_geometric_hgt.sampler.HGTSampler`, so that it runs
    without torch-sparse, on CPU or CUDA (sampling runs where ``data``'s
    edges are).

    Each node type keeps a budget; each new node adds :math:`1 / \deg` to
    its unsampled in-neighbours; every hop, each type draws
    ``num_samples[type][hop]`` nodes with probability proportional to the
    squared budget; a batch is the subgraph induced by the sampled nodes,
    seeds first.

    Args:
        data (HeteroData or Tuple[FeatureStore, GraphStore]): The graph.
        num_samples (List[int] or Dict[str, List[int]]): Nodes drawn per hop,
            for every node type or per node type.
        input_nodes (str or Tuple[str, torch.Tensor]): The seeds' node type,
            with their indices or a mask (:obj:`None` for all).
        is_sorted (bool, optional): Edges already sorted by destination.
            (default: :obj:`False`)
        transform (callable, optional): Applied to every mini-batch.
            (default: :obj:`None`)
        transform_sampler_output (callable, optional): Applied to every
            sampler output. (default: :obj:`None`)
        filter_per_worker (bool, optional): Gather features in the workers.
            (default: :obj:`None`: PyG's choice)
        max_neighbors (int, optional): Cap on the in-neighbours a node adds
            budget to (pyHGT's; :obj:`None`: all, as PyG).
            (default: :obj:`None`)
        time_attr (str, optional): Node attribute holding times: no
            neighbour later than its seed time. (default: :obj:`None`)
        input_time (torch.Tensor, optional): The seeds' times, instead of
            their ``time_attr``. (default: :obj:`None`)
        generator (torch.Generator, optional): Orders the seeds and seeds
            the draws. (default: :obj:`None`)
        **kwargs (optional): Arguments of
            :class:`torch.utils.data.DataLoader`, such as ``batch_size``,
            ``shuffle`` or ``num_workers``.

    Shapes:
        - **output:** PyG's batch: a :class:`~torch_geometric.data.
          HeteroData` with the sampled nodes' attributes and ``n_id``, the
          induced edges with their attributes and ``e_id``, ``input_id``
          and ``batch_size`` on the input type, ``num_sampled_nodes`` per
          hop.
    """
    def __init__(
        self,
        data: GraphData,
        num_samples: NumSamples,
        input_nodes: InputNodes,
        is_sorted: bool = False,
        transform: Optional[Callable] = None,
        transform_sampler_output: Optional[Callable] = None,
        filter_per_worker: Optional[bool] = None,
        max_neighbors: Optional[int] = None,
        time_attr: Optional[str] = None,
        input_time: OptTensor = None,
        generator: Optional[torch.Generator] = None,
        **kwargs,
    ):
        if input_time is not None and time_attr is None:
            raise ValueError("'input_time' needs 'time_attr'")
        sampler = _sampler(data, num_samples, is_sorted, max_neighbors,
                           time_attr, generator, kwargs)
        check_input_nodes(sampler, input_nodes)
        super().__init__(
            data=data, node_sampler=sampler, input_nodes=input_nodes,
            input_time=input_time, transform=transform,
            transform_sampler_output=transform_sampler_output,
            filter_per_worker=filter_per_worker, generator=generator,
            **kwargs)


class LinkHGTLoader(LinkLoader):
    r"""Link-level mini-batches by HGSampling, which no other library
    offers: PyG's :class:`~torch_geometric.loader.LinkLoader` over
    :class:`~torch_geometric_hgt.sampler.HGTSampler`, seeded by the
    endpoints of ``batch_size`` edges of ``edge_label_index`` (and of
    negatives from PyG's :class:`~torch_geometric.sampler.NegativeSampling`),
    with the batches of PyG's
    :class:`~torch_geometric.loader.LinkNeighborLoader`.

    Args:
        data (HeteroData or Tuple[FeatureStore, GraphStore]): The graph.
        num_samples (List[int] or Dict[str, List[int]]): Nodes drawn per hop,
            for every node type or per node type.
        edge_label_index (EdgeType or Tuple[EdgeType, torch.Tensor]): The
            edges to predict and their edge type (:obj:`None`: all edges of
            the type).
        edge_label (torch.Tensor, optional): Their labels.
            (default: :obj:`None`)
        neg_sampling (NegativeSampling, optional): How to draw negatives.
            (default: :obj:`None`)
        neg_sampling_ratio (int or float, optional): Binary negatives per
            positive (PyG's deprecated form). (default: :obj:`None`)
        is_sorted (bool, optional): Edges already sorted by destination.
            (default: :obj:`False`)
        transform (callable, optional): Applied to every mini-batch.
            (default: :obj:`None`)
        transform_sampler_output (callable, optional): Applied to every
            sampler output. (default: :obj:`None`)
        filter_per_worker (bool, optional): Gather features in the workers.
            (default: :obj:`None`: PyG's choice)
        max_neighbors (int, optional): Cap on the in-neighbours a node adds
            budget to. (default: :obj:`None`)
        generator (torch.Generator, optional): Orders the edges and seeds
            the draws. (default: :obj:`None`)
        **kwargs (optional): Arguments of
            :class:`torch.utils.data.DataLoader`.

    Shapes:
        - **output:** PyG's link batch (see
          :class:`~torch_geometric_hgt.loader.LinkNeighborLoader`) over the
          subgraph induced by the sampled nodes.
    """
    def __init__(
        self,
        data: GraphData,
        num_samples: NumSamples,
        edge_label_index: InputEdges = None,
        edge_label: OptTensor = None,
        neg_sampling: Optional[NegativeSampling] = None,
        neg_sampling_ratio: Optional[Union[int, float]] = None,
        is_sorted: bool = False,
        transform: Optional[Callable] = None,
        transform_sampler_output: Optional[Callable] = None,
        filter_per_worker: Optional[bool] = None,
        max_neighbors: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        **kwargs,
    ):
        sampler = _sampler(data, num_samples, is_sorted, max_neighbors, None,
                           generator, kwargs)
        check_edge_label_index(sampler, data, edge_label_index)
        super().__init__(
            data=data, link_sampler=sampler,
            edge_label_index=edge_label_index, edge_label=edge_label,
            neg_sampling=neg_sampling, neg_sampling_ratio=neg_sampling_ratio,
            transform=transform,
            transform_sampler_output=transform_sampler_output,
            filter_per_worker=filter_per_worker, generator=generator,
            **kwargs)
