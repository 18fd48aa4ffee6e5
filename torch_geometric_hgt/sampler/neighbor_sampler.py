"""PyG's :class:`torch_geometric.sampler.NeighborSampler`, vectorized in
plain PyTorch: no pyg-lib or torch-sparse, on CPU or CUDA."""
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.sampler import (BaseSampler, EdgeSamplerInput,
                                     HeteroSamplerOutput, NegativeSampling,
                                     NodeSamplerInput, SamplerOutput)
from torch_geometric.sampler.base import NumNeighbors, SubgraphType
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample
from torch_geometric.typing import EdgeType, NodeType

from torch_geometric_hgt.sampler.draws import (KeyedNodeSet, NodeSet, last,
                                               uniform_with_replacement,
                                               uniform_without_replacement,
                                               weighted)
from torch_geometric_hgt.sampler.graph import (EDGE, NODE, Graph, GraphData,
                                               build_graph, eligible,
                                               induced_edges)
from torch_geometric_hgt.sampler.seeds import (Seeds, WorkerGenerator,
                                               check_generator, check_seeds,
                                               hetero_output)

NumNeighborsType = Union[NumNeighbors, List[int], Dict[EdgeType, List[int]]]


class NeighborSampler(BaseSampler):
    r"""Neighbour sampling (`"Inductive Representation Learning on Large
    Graphs" <https://arxiv.org/abs/1706.02216>`_) with the arguments and the
    output of PyG's :class:`torch_geometric.sampler.NeighborSampler`, so
    that PyG's :class:`~torch_geometric.loader.NodeLoader` and
    :class:`~torch_geometric.loader.LinkLoader` (and every loader built on
    them) drive it, in plain PyTorch on the device of ``data``'s edges.

    At hop :math:`h`, every node of type :math:`t` reached at hop
    :math:`h - 1` (the seeds at hop 0) draws, for each edge type
    :math:`(s, r, t)`, ``num_neighbors[(s, r, t)][h]`` of its eligible
    in-neighbours (:obj:`-1`: all): uniformly without replacement, with
    replacement where ``replace``, proportionally to ``weight_attr`` where
    given, the most recent where ``temporal_strategy='last'``. With
    ``time_attr``, an in-neighbour is eligible when its time (node-level)
    or its edge's time (edge-level) is at most the seed time of the example
    it was reached from; types without times are not filtered. Temporal
    sampling is always disjoint: every seed grows its own subgraph, and
    ``batch`` says which node belongs to which.

    Args:
        data (Data or HeteroData or Tuple[FeatureStore, GraphStore]): The
            graph.
        num_neighbors (List[int] or Dict[Tuple[str, str, str], List[int]]):
            Neighbours drawn per node and hop, for every edge type or per
            edge type.
        subgraph_type (SubgraphType or str, optional): :obj:`"directional"`
            (the drawn edges), :obj:`"bidirectional"` (the drawn edges in
            both directions) or :obj:`"induced"` (every edge between
            sampled nodes). (default: :obj:`"directional"`)
        replace (bool, optional): Draw with replacement.
            (default: :obj:`False`)
        disjoint (bool, optional): A separate subgraph per seed.
            (default: :obj:`False`)
        temporal_strategy (str, optional): :obj:`"uniform"` or
            :obj:`"last"` among the eligible neighbours.
            (default: :obj:`"uniform"`)
        time_attr (str, optional): Node- or edge-level attribute holding
            times. (default: :obj:`None`)
        weight_attr (str, optional): Edge attribute holding non-negative
            sampling weights. (default: :obj:`None`)
        is_sorted (bool, optional): Edges are already sorted by destination
            (and by time within each destination, with ``time_attr``).
            (default: :obj:`False`)
        share_memory (bool, optional): Put the CSC in shared memory (for
            loader workers). (default: :obj:`False`)
        directed (bool, optional): Deprecated in PyG; :obj:`False` means
            ``subgraph_type='induced'``. (default: :obj:`True`)
        generator (torch.Generator, optional): Source of the draws (each
            loader worker draws from its own copy, seeded from the worker's
            seed); :obj:`None` draws from torch's global generator.
            (default: :obj:`None`)
    """
    def __init__(
        self,
        data: GraphData,
        num_neighbors: NumNeighborsType,
        subgraph_type: Union[SubgraphType, str] = 'directional',
        replace: bool = False,
        disjoint: bool = False,
        temporal_strategy: str = 'uniform',
        time_attr: Optional[str] = None,
        weight_attr: Optional[str] = None,
        is_sorted: bool = False,
        share_memory: bool = False,
        directed: bool = True,
        generator: Optional[torch.Generator] = None,
    ):
        if not directed:
            subgraph_type = SubgraphType.induced
        try:
            self.subgraph_type = SubgraphType(subgraph_type)
        except ValueError:
            raise ValueError(f"'subgraph_type' must be 'directional', "
                             f"'bidirectional' or 'induced' (got "
                             f"{subgraph_type!r})") from None
        if temporal_strategy not in ('uniform', 'last'):
            raise ValueError(f"'temporal_strategy' must be 'uniform' or "
                             f"'last' (got {temporal_strategy!r})")
        self.graph: Graph = build_graph(data, time_attr, weight_attr,
                                        is_sorted, share_memory)
        self.is_hetero = not _is_homogeneous(data)
        self.node_types = list(self.graph.num_nodes)
        self.edge_types = list(self.graph.rel)
        self.num_nodes = self.graph.num_nodes if self.is_hetero else \
            self.graph.num_nodes[NODE]
        self.node_time = None
        if self.graph.node_time is not None:
            self.node_time = self.graph.node_time if self.is_hetero else \
                self.graph.node_time.get(NODE)
        self.num_neighbors = num_neighbors
        self.replace = replace
        self.disjoint = disjoint
        self.temporal_strategy = temporal_strategy
        self.use_weights = weight_attr is not None
        self.generator = WorkerGenerator(check_generator(generator,
                                                         self.graph))
        if self.subgraph_type == SubgraphType.induced and self.disjoint:
            raise ValueError("'disjoint' sampling (temporal sampling is "
                             "always disjoint) is not supported with "
                             "subgraph_type='induced'")

    @property
    def num_neighbors(self) -> NumNeighbors:
        return self._num_neighbors

    @num_neighbors.setter
    def num_neighbors(self, num_neighbors: NumNeighborsType):
        if not isinstance(num_neighbors, NumNeighbors):
            if not isinstance(num_neighbors, (list, tuple, dict)):
                raise TypeError(f"'num_neighbors' must be a list of ints or "
                                f"a dict of them per edge type (got "
                                f"{num_neighbors!r})")
            num_neighbors = NumNeighbors(num_neighbors)
        types = self.edge_types if self.is_hetero else None
        values = num_neighbors.get_values(types)
        lists = values.values() if isinstance(values, dict) else [values]
        for sizes in lists:
            if not all(isinstance(k, int) and not isinstance(k, bool) and
                       k >= -1 for k in sizes):
                raise ValueError(f"'num_neighbors' must hold ints >= -1 "
                                 f"(got {sizes!r})")
        self._sizes = values if isinstance(values, dict) else {EDGE: values}
        self._num_neighbors = num_neighbors

    @property
    def is_temporal(self) -> bool:
        return self.graph.temporal

    @property
    def disjoint(self) -> bool:
        return self._disjoint or self.is_temporal

    @disjoint.setter
    def disjoint(self, disjoint: bool):
        self._disjoint = disjoint

    @property
    def edge_permutation(self) -> None:
        # sampled edges carry the graph's own edge ids already
        return None

    def sample_from_nodes(self, inputs: NodeSamplerInput
                          ) -> Union[SamplerOutput, HeteroSamplerOutput]:
        out = node_sample(inputs, self._sample)
        return self._directions(out)

    def sample_from_edges(self, inputs: EdgeSamplerInput,
                          neg_sampling: Optional[NegativeSampling] = None
                          ) -> Union[SamplerOutput, HeteroSamplerOutput]:
        out = edge_sample(inputs, self._sample, self.num_nodes,
                          self.disjoint, self.node_time, neg_sampling)
        return self._directions(out)

    def _directions(self, out):
        if self.subgraph_type == SubgraphType.bidirectional:
            out = out.to_bidirectional()
        return out

    def _sample(self, seed: Union[Tensor, Dict[NodeType, Tensor]],
                seed_time: Optional[Union[Tensor, Dict[NodeType, Tensor]]]
                = None, **kwargs) -> Union[SamplerOutput,
                                           HeteroSamplerOutput]:
        seeds = check_seeds(self.graph, seed, seed_time, self.is_hetero)
        out = neighbor_sample(
            self.graph, seeds, self._sizes, replace=self.replace,
            disjoint=self.disjoint, strategy=self.temporal_strategy,
            use_weights=self.use_weights,
            induced=self.subgraph_type == SubgraphType.induced,
            generator=self.generator())
        return hetero_output(out, self.is_hetero)


def _is_homogeneous(data: GraphData) -> bool:
    if isinstance(data, tuple):
        return [a.edge_type for a in data[1].get_all_edge_attrs()] == [None]
    return not hasattr(data, 'node_types')


def draw(graph: Graph, et: EdgeType, start: Tensor, count: Tensor, k: int,
         replace: bool, strategy: str, use_weights: bool,
         generator: Optional[torch.Generator]) -> Tuple[Tensor, Tensor]:
    """``(offset, owner)`` of the neighbours drawn from each group."""
    rel = graph.rel[et]
    if use_weights and rel.weight is not None:
        return weighted(rel.weight, start, count, k, replace, generator)
    if strategy == 'last' and rel.key is not None:
        return last(count, k)
    if replace:
        return uniform_with_replacement(count, k, generator)
    return uniform_without_replacement(count, k, generator)


def neighbor_sample(graph: Graph, seeds: Seeds,
                    num_neighbors: Dict[EdgeType, List[int]], *,
                    replace: bool = False, disjoint: bool = False,
                    strategy: str = 'uniform', use_weights: bool = False,
                    induced: bool = False,
                    generator: Optional[torch.Generator] = None) -> dict:
    """Neighbour sampling over ``len(num_neighbors[et])`` hops (see
    :class:`NeighborSampler`). Returns the fields of a
    :class:`~torch_geometric.sampler.HeteroSamplerOutput` as a dict."""
    device = graph.device
    sets = {nt: (KeyedNodeSet if disjoint else NodeSet)(n, device)
            for nt, n in graph.num_nodes.items()}
    n_id = {nt: [] for nt in graph.num_nodes}
    batch = {nt: [] for nt in graph.num_nodes}
    counts = {nt: [] for nt in graph.num_nodes}
    root_time = seeds.root_time
    frontier = {}
    for nt in graph.num_nodes:
        ids, b = seeds.node.get(nt), seeds.batch.get(nt)
        if ids is None:
            counts[nt].append(0)
            continue
        sets[nt].add_seeds(_key(ids, b, graph.num_nodes[nt], disjoint))
        n_id[nt].append(ids)
        batch[nt].append(b)
        counts[nt].append(ids.numel())
        frontier[nt] = (ids, torch.arange(ids.numel(), device=device), b)
    rows = {et: [] for et in graph.rel}
    cols = {et: [] for et in graph.rel}
    eids = {et: [] for et in graph.rel}
    edge_counts = {et: [] for et in graph.rel}
    num_hops = len(next(iter(num_neighbors.values()), []))
    for hop in range(num_hops):
        found: Dict[NodeType, List[tuple]] = {}
        for et, rel in graph.rel.items():
            k = num_neighbors[et][hop]
            if et[2] not in frontier or k == 0:
                continue
            nodes, local, b = frontier[et[2]]
            bound = None if root_time is None else root_time[b]
            start, count = eligible(graph, et, nodes, bound)
            offset, owner = draw(graph, et, start, count, k, replace,
                                 strategy, use_weights, generator)
            src, e = rel.edges.index_select(
                0, start.index_select(0, owner) + offset).unbind(1)
            found.setdefault(et[0], []).append(
                (et, src, local.index_select(0, owner), e,
                 None if b is None else b.index_select(0, owner)))
        frontier = {}
        for nt in graph.num_nodes:
            items = found.get(nt)
            if not items:
                counts[nt].append(0)
                continue
            src = torch.cat([item[1] for item in items])
            b = None if not disjoint else \
                torch.cat([item[4] for item in items])
            key = _key(src, b, graph.num_nodes[nt], disjoint)
            first = sets[nt].add(key)
            new = src.index_select(0, first)
            new_b = None if b is None else b.index_select(0, first)
            n_id[nt].append(new)
            batch[nt].append(new_b)
            counts[nt].append(new.numel())
            start = sets[nt].size - new.numel()
            frontier[nt] = (new, torch.arange(start, sets[nt].size,
                                              device=device), new_b)
            local = sets[nt].local(key)
            at = 0
            for et, s, dst_local, e, _ in items:
                rows[et].append(local[at:at + s.numel()])
                cols[et].append(dst_local)
                eids[et].append(e)
                at += s.numel()
        for et in graph.rel:
            done = sum(edge_counts[et])
            edge_counts[et].append(sum(e.numel() for e in eids[et]) - done)
    empty = torch.empty(0, dtype=torch.long, device=device)
    node = {nt: torch.cat(p) if p else empty for nt, p in n_id.items()}
    out = dict(node=node, num_sampled_nodes=counts,
               batch={nt: torch.cat(b) if b else empty
                      for nt, b in batch.items()} if disjoint else None)
    if induced:
        out.update(induced_edges(graph, node, sets))
        out['num_sampled_edges'] = None
        return out
    out['row'] = {et: torch.cat(r) if r else empty for et, r in rows.items()}
    out['col'] = {et: torch.cat(c) if c else empty for et, c in cols.items()}
    out['edge'] = {et: torch.cat(e) if e else empty for et, e in eids.items()}
    out['num_sampled_edges'] = edge_counts
    return out


def _key(ids: Tensor, batch: Optional[Tensor], num_nodes: int,
         disjoint: bool) -> Tensor:
    return batch * num_nodes + ids if disjoint else ids
