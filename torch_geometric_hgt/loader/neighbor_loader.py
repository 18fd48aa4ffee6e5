"""PyG's :class:`torch_geometric.loader.NeighborLoader` for
:class:`~torch_geometric.data.HeteroData`, without pyg-lib or
torch-sparse."""
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from torch_geometric_hgt.loader.base import (InputNodes, SeedLoader,
                                             check_data, sizes_per_type)
from torch_geometric_hgt.loader.sampling import Sample, neighbor_sample

NumNeighbors = Union[List[int], Dict[EdgeType, List[int]]]


class NeighborLoader(SeedLoader):
    r"""Mini-batches of a heterogeneous graph by neighbour sampling
    (`"Inductive Representation Learning on Large Graphs"
    <https://arxiv.org/abs/1706.02216>`_), with the arguments and the
    output of PyG's :class:`torch_geometric.loader.NeighborLoader`, in
    plain PyTorch on CPU or CUDA (sampling runs where ``data``'s edges
    are).

    At hop :math:`h`, every node of type :math:`t` reached at hop
    :math:`h - 1` (the seeds at hop 0) draws, for each edge type
    :math:`(s, r, t)`, ``num_neighbors[(s, r, t)][h]`` of its in-neighbours
    uniformly without replacement (all of them where it has fewer, or for
    :obj:`-1`). The mini-batch holds every node reached and every edge
    drawn. Each batch's draws come from its own seed, taken from
    ``generator``, so results repeat for a seeded ``generator`` (or after
    ``torch.manual_seed``) with any ``num_workers``.

    Args:
        data (HeteroData): The graph; ``edge_index`` of every edge type.
        num_neighbors (List[int] or Dict[Tuple[str, str, str], List[int]]):
            Neighbours drawn per node and hop, for every edge type or per
            edge type (edge types left out draw none); :obj:`-1` takes all.
        input_nodes (str or Tuple[str, torch.Tensor]): The seeds' node type,
            with their indices or a boolean mask (:obj:`None` for all).
        batch_size (int, optional): Seeds per mini-batch. (default: :obj:`1`)
        shuffle (bool, optional): A fresh seed order every epoch.
            (default: :obj:`False`)
        drop_last (bool, optional): Drop the last, smaller batch.
            (default: :obj:`False`)
        time_attr (str, optional): Node attribute holding integer times;
            then a node's neighbours are those not later than the time of
            the seed it was reached from. (default: :obj:`None`)
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
          (seeds first), every edge attribute of the drawn edges,
          ``edge_index`` in local indices and ``e_id`` per edge type,
          ``input_id`` and ``batch_size`` on the input type,
          ``num_sampled_nodes`` / ``num_sampled_edges`` per hop; with
          ``time_attr`` also ``seed_time`` per node and ``edge_time``
          (seed time of the destination minus time of the source) per edge.
    """
    per_hop = True

    def __init__(self, data: HeteroData, num_neighbors: NumNeighbors,
                 input_nodes: InputNodes, batch_size: int = 1,
                 shuffle: bool = False, drop_last: bool = False,
                 time_attr: Optional[str] = None,
                 input_time: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None,
                 transform: Optional[Callable] = None, **kwargs):
        check_data(data)
        self.num_neighbors = sizes_per_type('num_neighbors', num_neighbors,
                                            data.edge_types, -1)
        super().__init__(data, input_nodes, batch_size, shuffle, drop_last,
                         generator, time_attr, input_time, transform,
                         **kwargs)

    def sample(self, seeds: Tensor, seed_time: Optional[Tensor],
               generator: torch.Generator) -> Sample:
        return neighbor_sample(self.graph, self.input_type, seeds,
                               self.num_neighbors, generator, seed_time)

