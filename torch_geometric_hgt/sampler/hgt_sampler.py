"""HGSampling (HGT paper, Algorithm 1) as a PyG sampler, node- and
link-level, in plain PyTorch on CPU or CUDA."""
from typing import Dict, List, Optional, Union

import torch
from torch import Tensor
from torch_geometric.sampler import (BaseSampler, EdgeSamplerInput,
                                     HeteroSamplerOutput, NegativeSampling,
                                     NodeSamplerInput)
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample
from torch_geometric.typing import NodeType

from torch_geometric_hgt.sampler.draws import (NodeSet,
                                               uniform_without_replacement,
                                               weighted_without_replacement)
from torch_geometric_hgt.sampler.graph import (Graph, GraphData, build_graph,
                                               eligible, induced_edges)
from torch_geometric_hgt.sampler.seeds import (Seeds, WorkerGenerator,
                                               check_generator, check_seeds,
                                               hetero_output)

NumSamples = Union[List[int], Dict[NodeType, List[int]]]


class HGTSampler(BaseSampler):
    r"""HGSampling (`"Heterogeneous Graph Transformer"
    <https://arxiv.org/abs/2003.01332>`_, Algorithm 1) with the arguments
    and output of PyG's :class:`torch_geometric.sampler.HGTSampler`, in
    plain PyTorch on the device of ``data``'s edges; beyond PyG, from the
    endpoints of edges too (:meth:`sample_from_edges`, with PyG's
    :class:`~torch_geometric.sampler.NegativeSampling`).

    Every node type :math:`\tau` keeps a budget :math:`B_\tau`. Each newly
    sampled node :math:`t` adds :math:`1 / \deg(t)` to :math:`B` of each
    in-neighbour not sampled yet. At hop :math:`\ell`, every type draws
    ``num_samples[type][l]`` nodes without replacement, node :math:`s`
    with probability :math:`B_\tau[s]^2 / \|B_\tau\|^2` (among those not
    yet drawn), and they add their neighbours' budget in turn. The
    subgraph is the one induced by all sampled nodes.

    Args:
        data (HeteroData): The graph.
        num_samples (List[int] or Dict[str, List[int]]): Nodes drawn per hop,
            for every node type or per node type (types left out draw
            none).
        is_sorted (bool, optional): Edges are already sorted by destination.
            (default: :obj:`False`)
        share_memory (bool, optional): Put the CSC in shared memory (for
            loader workers). (default: :obj:`False`)
        max_neighbors (int, optional): A node with more in-neighbours (of
            one edge type) adds :math:`1 / \mathrm{max\_neighbors}` to that
            many of them, drawn uniformly: the same budget in expectation,
            bounded work per node (pyHGT's cap). :obj:`None` adds to all,
            as PyG. (default: :obj:`None`)
        time_attr (str, optional): Node attribute holding times; then a
            node's neighbours are those not later than its seed time (the
            seeds' own; a sampled node's, the latest of the nodes that
            added to its budget). (default: :obj:`None`)
        generator (torch.Generator, optional): Source of the draws (each
            loader worker draws from its own copy, seeded from the worker's
            seed). (default: :obj:`None`)
    """
    def __init__(
        self,
        data: GraphData,
        num_samples: NumSamples,
        is_sorted: bool = False,
        share_memory: bool = False,
        max_neighbors: Optional[int] = None,
        time_attr: Optional[str] = None,
        generator: Optional[torch.Generator] = None,
    ):
        if not hasattr(data, 'node_types') and not isinstance(data, tuple):
            raise TypeError(f"'data' must be a HeteroData or a "
                            f"(FeatureStore, GraphStore) pair (got "
                            f"{type(data).__name__})")
        self.graph: Graph = build_graph(data, time_attr, None, is_sorted,
                                        share_memory)
        if self.graph.temporal and not self.graph.node_time:
            raise ValueError(f"'time_attr' is '{time_attr}': HGSampling "
                             f"takes node-level times only")
        self.node_types = list(self.graph.num_nodes)
        self.edge_types = list(self.graph.rel)
        self.num_nodes = self.graph.num_nodes
        self.num_samples = sizes_per_type(num_samples, self.node_types)
        self.num_hops = len(next(iter(self.num_samples.values()), []))
        if max_neighbors is not None and (
                not isinstance(max_neighbors, int) or max_neighbors < 1):
            raise ValueError(f"'max_neighbors' must be a positive int or "
                             f"None (got {max_neighbors!r})")
        self.max_neighbors = max_neighbors
        self.generator = WorkerGenerator(check_generator(generator,
                                                         self.graph))

    @property
    def edge_permutation(self) -> None:
        # sampled edges carry the graph's own edge ids already
        return None

    def sample_from_nodes(self, inputs: NodeSamplerInput
                          ) -> HeteroSamplerOutput:
        return node_sample(inputs, self._sample)

    def sample_from_edges(self, inputs: EdgeSamplerInput,
                          neg_sampling: Optional[NegativeSampling] = None
                          ) -> HeteroSamplerOutput:
        if inputs.time is not None:
            raise ValueError("'edge_label_time' needs disjoint subgraphs, "
                             "which HGSampling does not make")
        return edge_sample(inputs, self._sample, self.num_nodes, False,
                           self.graph.node_time, neg_sampling)

    def _sample(self, seed: Dict[NodeType, Tensor],
                seed_time: Optional[Dict[NodeType, Tensor]] = None,
                **kwargs) -> HeteroSamplerOutput:
        seeds = check_seeds(self.graph, seed, seed_time, True)
        out = hgt_sample(self.graph, seeds, self.num_samples,
                         self.max_neighbors, self.generator())
        return hetero_output(out, True)


def sizes_per_type(num_samples: NumSamples, types: List[NodeType]
                   ) -> Dict[NodeType, List[int]]:
    """``num_samples`` as a list of ints ``>= 0`` per node type (types left
    out get zeros), all of one length, or a clear error."""
    if isinstance(num_samples, (list, tuple)):
        given = {t: list(num_samples) for t in types}
    elif isinstance(num_samples, dict):
        unknown = [t for t in num_samples if t not in types]
        if unknown:
            raise ValueError(f"'num_samples' names node types {unknown} "
                             f"that are not in the graph {types}")
        given = {t: list(v) for t, v in num_samples.items()}
    else:
        raise TypeError(f"'num_samples' must be a list of ints or a dict of "
                        f"them per node type (got {num_samples!r})")
    for t, sizes in given.items():
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0
                   for k in sizes):
            raise ValueError(f"'num_samples' must hold ints >= 0 (got "
                             f"{sizes!r} for {t!r})")
    lengths = {len(v) for v in given.values()}
    if len(lengths) > 1:
        raise ValueError(f"'num_samples' lists must all have one entry per "
                         f"hop (got lengths {sorted(lengths)})")
    hops = lengths.pop() if lengths else 0
    return {t: given.get(t, [0] * hops) for t in types}


def hgt_sample(graph: Graph, seeds: Seeds,
               num_samples: Dict[NodeType, List[int]],
               max_neighbors: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> dict:
    """HGSampling from ``seeds`` (see :class:`HGTSampler`). Returns the
    fields of a :class:`~torch_geometric.sampler.HeteroSamplerOutput` as a
    dict."""
    device = graph.device
    sets = {nt: NodeSet(n, device) for nt, n in graph.num_nodes.items()}
    n_id = {nt: [] for nt in graph.num_nodes}
    temporal = graph.temporal
    times = {nt: [] for nt in graph.num_nodes}
    budget = {nt: torch.zeros(n, dtype=torch.float64, device=device)
              for nt, n in graph.num_nodes.items()}
    reach = None
    if temporal:
        dtype = graph.times.dtype
        low = (torch.finfo if dtype.is_floating_point else torch.iinfo)(
            dtype).min
        reach = {nt: torch.full((n, ), low, dtype=dtype, device=device)
                 for nt, n in graph.num_nodes.items()}
    cap = -1 if max_neighbors is None else max_neighbors

    def add_budget(new):
        for et, rel in graph.rel.items():
            if et[2] not in new:
                continue
            nodes, bound = new[et[2]]
            start, count = eligible(graph, et, nodes, bound)
            offset, owner = uniform_without_replacement(count, cap,
                                                        generator)
            nbr = rel.edges[:, 0].index_select(
                0, start.index_select(0, owner) + offset)
            share = count if cap < 0 else count.clamp_max(cap)
            weight = 1.0 / share[owner].double()
            keep = sets[et[0]].local(nbr) < 0
            budget[et[0]].index_add_(0, nbr[keep], weight[keep])
            if reach is not None:
                reach[et[0]].scatter_reduce_(
                    0, nbr[keep], bound[owner][keep], 'amax')
        for nt, (nodes, _) in new.items():
            budget[nt][nodes] = 0

    new = {}
    for nt in graph.num_nodes:
        ids = seeds.node.get(nt)
        if ids is None:
            continue
        sets[nt].add_seeds(ids)
        n_id[nt].append(ids)
        bound = None
        if temporal:
            bound = seeds.root_time[seeds.batch[nt]].to(
                graph.times.dtype)
            times[nt].append(bound)
        new[nt] = (ids, bound)
    add_budget(new)
    num_hops = len(next(iter(num_samples.values()), []))
    for hop in range(num_hops):
        new = {}
        for nt, sizes in num_samples.items():
            if sizes[hop] == 0:
                continue
            drawn = weighted_without_replacement(budget[nt].square(),
                                                 sizes[hop], generator)
            sets[nt].add(drawn)
            n_id[nt].append(drawn)
            bound = None
            if reach is not None:
                bound = reach[nt][drawn]
                times[nt].append(bound)
            new[nt] = (drawn, bound)
        add_budget(new)
    empty = torch.empty(0, dtype=torch.long, device=device)
    node = {nt: torch.cat(p) if p else empty for nt, p in n_id.items()}
    bound = None
    if temporal:
        bound = {nt: torch.cat(p) if p else graph.times.new_empty(0)
                 for nt, p in times.items()}
    # PyG's HGT batches carry no per-hop counts
    out = dict(node=node, batch=None, num_sampled_nodes=None,
               num_sampled_edges=None)
    out.update(induced_edges(graph, node, sets, bound))
    return out
