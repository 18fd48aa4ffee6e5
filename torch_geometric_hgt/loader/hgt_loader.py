"""PyG's :class:`torch_geometric.loader.HGTLoader` (HGSampling), without
torch-sparse, on CPU or CUDA."""
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import NodeType

from torch_geometric_hgt.loader.base import (InputNodes, SeedLoader,
                                             check_data, check_sizes,
                                             sizes_per_type)
from torch_geometric_hgt.loader.sampling import Sample, hgt_sample

NumSamples = Union[List[int], Dict[NodeType, List[int]]]


class HGTLoader(SeedLoader):
    r"""Mini-batches of a heterogeneous graph by HGSampling (`"Heterogeneous
    Graph Transformer" <https://arxiv.org/abs/2003.01332>`_, Algorithm 1),
    with the arguments and the output of PyG's
    :class:`torch_geometric.loader.HGTLoader`, in plain PyTorch on CPU or
    CUDA (sampling runs where ``data``'s edges are).

    Every node type :math:`\tau` keeps a budget :math:`B_\tau`. Each newly
    sampled node :math:`t` adds :math:`1 / \deg(t)` to :math:`B` of each
    in-neighbour not sampled yet. At hop :math:`\ell`, every type draws
    ``num_samples[type][l]`` nodes without replacement, node :math:`s`
    with probability :math:`B_\tau[s]^2 / \|B_\tau\|^2` (among those not yet
    drawn), and they add their neighbours' budget in turn. The mini-batch
    is the subgraph induced by all sampled nodes.

    Args:
        data (HeteroData): The graph; ``edge_index`` of every edge type.
        num_samples (List[int] or Dict[str, List[int]]): Nodes drawn per hop,
            for every node type or per node type (types left out draw
            none).
        input_nodes (str or Tuple[str, torch.Tensor]): The seeds' node type,
            with their indices or a boolean mask (:obj:`None` for all).
        batch_size (int, optional): Seeds per mini-batch. (default: :obj:`1`)
        shuffle (bool, optional): A fresh seed order every epoch.
            (default: :obj:`False`)
        drop_last (bool, optional): Drop the last, smaller batch.
            (default: :obj:`False`)
        max_neighbors (int, optional): A node with more in-neighbours (of
            one edge type) adds :math:`1 / \mathrm{max\_neighbors}` to that
            many of them, drawn uniformly: the same budget in expectation,
            bounded work per node (pyHGT's cap). :obj:`None` adds to all,
            as PyG. (default: :obj:`None`)
        time_attr (str, optional): Node attribute holding integer times;
            then a node's neighbours are those not later than its seed time
            (the seeds' own; a sampled node's, the latest of the nodes that
            added to its budget). (default: :obj:`None`)
        input_time (torch.Tensor, optional): The seeds' times, instead of
            their ``time_attr``. (default: :obj:`None`)
        generator (torch.Generator, optional): Source of the seed order and
            the batches' random seeds. (default: :obj:`None`)
        transform (callable, optional): Applied to every mini-batch.
            (default: :obj:`None`)
        **kwargs (optional): Arguments of
            :class:`torch.utils.data.DataLoader`, such as ``num_workers``.

    Shapes:
        - **output:** a :class:`~torch_geometric.data.HeteroData` with every
          node attribute of the sampled nodes and ``n_id`` per node type
          (seeds first), every edge of the induced subgraph (``edge_index``
          in local indices, its attributes, ``e_id``), ``input_id`` and
          ``batch_size`` on the input type; with ``time_attr`` also
          ``seed_time`` per node and ``edge_time`` per edge.
    """

    def __init__(self, data: HeteroData, num_samples: NumSamples,
                 input_nodes: InputNodes, batch_size: int = 1,
                 shuffle: bool = False, drop_last: bool = False,
                 max_neighbors: Optional[int] = None,
                 time_attr: Optional[str] = None,
                 input_time: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None,
                 transform: Optional[Callable] = None, **kwargs):
        check_data(data)
        self.num_samples = sizes_per_type('num_samples', num_samples,
                                          data.node_types, 0)
        if max_neighbors is not None:
            check_sizes("'max_neighbors'", [max_neighbors], 1)
        self.max_neighbors = max_neighbors
        super().__init__(data, input_nodes, batch_size, shuffle, drop_last,
                         generator, time_attr, input_time, transform,
                         **kwargs)

    def sample(self, seeds: Tensor, seed_time: Optional[Tensor],
               generator: torch.Generator) -> Sample:
        return hgt_sample(self.graph, self.input_type, seeds,
                          self.num_samples, self.max_neighbors, generator,
                          seed_time)

