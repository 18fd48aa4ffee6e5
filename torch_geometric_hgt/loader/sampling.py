"""The vectorized sampling core under both loaders: sampling without
replacement (uniform and weighted), the per-type node set with its
global -> local relabelling, and the two samplers (neighbour sampling and
HGSampling). No Python loop runs over nodes or edges; loops run over hops,
types and the fan-out."""
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.typing import EdgeType, NodeType

from torch_geometric_hgt.loader.graph import Graph, eligible, segments


def uniform_without_replacement(count: Tensor, k: int,
                                generator: Optional[torch.Generator]
                                ) -> Tuple[Tensor, Tensor]:
    """For every ``i``, ``min(k, count[i])`` distinct offsets in ``[0,
    count[i])``, each subset equally likely (all offsets where ``k < 0`` or
    ``count[i] <= k``). Returns ``(offset, owner)``.

    Groups larger than ``k`` run Floyd's algorithm side by side: ``k`` steps,
    each one draw per group, so the work is ``O(groups k^2)`` whatever the
    group sizes.
    """
    if k < 0:
        return segments(torch.zeros_like(count), count)
    small = count <= k
    few = small.nonzero().view(-1)
    n = count.index_select(0, few)
    offset, owner = segments(torch.zeros_like(n), n)
    owner = few.index_select(0, owner)
    big = (~small).nonzero().view(-1)
    if big.numel() == 0 or k == 0:
        return offset, owner
    n = count.index_select(0, big)
    # step i of Floyd's algorithm draws uniformly from [0, n - k + i]
    top = (n - k).unsqueeze(1) + torch.arange(k, device=count.device)
    u = torch.rand(big.numel(), k, dtype=torch.float64, device=count.device,
                   generator=generator)
    draw = torch.minimum((u * (top + 1)).long(), top)
    chosen = torch.empty_like(draw)
    chosen[:, 0] = draw[:, 0]
    for i in range(1, k):
        taken = (chosen[:, :i] == draw[:, i:i + 1]).any(1)
        chosen[:, i] = torch.where(taken, top[:, i], draw[:, i])
    return (torch.cat([offset, chosen.view(-1)]),
            torch.cat([owner, big.repeat_interleave(k)]))


def weighted_without_replacement(weight: Tensor, k: int,
                                 generator: Optional[torch.Generator]
                                 ) -> Tensor:
    """Indices of ``min(k, nnz)`` positive entries of ``weight``, drawn one
    after another with probability proportional to ``weight`` among those
    not yet drawn (``torch.multinomial(weight, k)``'s distribution), by the
    Gumbel top-k trick: one random key per entry, the ``k`` largest win."""
    cand = (weight > 0).nonzero().view(-1)
    if cand.numel() <= k:
        return cand
    u = torch.rand(cand.numel(), dtype=torch.float64, device=weight.device,
                   generator=generator)
    keys = weight[cand].double().log() - (-u.log()).log()
    return cand[keys.topk(k).indices]


class NodeSet:
    """The sampled nodes of one type: their global ids in sampling order
    (``n_id``) and the map global -> local (``-1`` where not sampled)."""

    def __init__(self, num_nodes: int, device: torch.device):
        self.assoc = torch.full((num_nodes, ), -1, dtype=torch.long,
                                device=device)
        self.parts: List[Tensor] = []
        self.size = 0
        # first position of each id in the call's candidates; reset after
        # each call, so a call costs O(candidates), not O(num_nodes)
        self.first = torch.full((num_nodes, ), FAR, dtype=torch.long,
                                device=device)

    def add_seeds(self, seeds: Tensor):
        """Seeds first, as given (a repeated seed keeps every position; its
        global id maps to the first)."""
        pos = torch.arange(seeds.numel(), device=seeds.device)
        self.assoc.scatter_reduce_(0, seeds, pos, 'amin', include_self=False)
        self.parts.append(seeds)
        self.size = seeds.numel()

    def add(self, cand: Tensor) -> Tuple[Tensor, Tensor]:
        """Appends the nodes of ``cand`` not sampled yet, each once, in
        order of first appearance. Returns them and the position in
        ``cand`` where each first appears."""
        pos = torch.arange(cand.numel(), device=cand.device)
        self.first.scatter_reduce_(0, cand, pos, 'amin')
        first = ((self.first.index_select(0, cand) == pos) &
                 (self.assoc.index_select(0, cand) < 0)).nonzero().view(-1)
        self.first.index_fill_(0, cand, FAR)
        new = cand.index_select(0, first)
        self.assoc.index_copy_(0, new, torch.arange(
            self.size, self.size + new.numel(), device=new.device))
        self.parts.append(new)
        self.size += new.numel()
        return new, first

    def local(self, ids: Tensor) -> Tensor:
        return self.assoc.index_select(0, ids)

    def n_id(self) -> Tensor:
        return torch.cat(self.parts) if self.parts else \
            self.assoc.new_empty(0)


FAR = torch.iinfo(torch.long).max


class Sample(NamedTuple):
    """A sampled subgraph: global node ids per type (seeds first), edges per
    edge type as local ``(source, destination)`` indices with their
    positions in the full graph's ``edge_index`` (``e_id``), the seed time
    of every sampled node (temporal sampling only), and the new nodes and
    edges per hop (``num_sampled_nodes``, ``num_sampled_edges``)."""
    n_id: Dict[NodeType, Tensor]
    edge_index: Dict[EdgeType, Tensor]
    e_id: Dict[EdgeType, Tensor]
    seed_time: Optional[Dict[NodeType, Tensor]]
    num_sampled_nodes: Dict[NodeType, List[int]]
    num_sampled_edges: Dict[EdgeType, List[int]]


class _State:
    """Node sets and seed times of one mini-batch."""

    def __init__(self, graph: Graph, seed_type: NodeType, seeds: Tensor,
                 seed_time: Optional[Tensor]):
        device = seeds.device
        self.graph = graph
        self.sets = {nt: NodeSet(n, device)
                     for nt, n in graph.num_nodes.items()}
        self.sets[seed_type].add_seeds(seeds)
        self.temporal = graph.time is not None
        self.times: Dict[NodeType, List[Tensor]] = {
            nt: [] for nt in graph.num_nodes}
        if self.temporal:
            if seed_time is None:
                seed_time = graph.time[seed_type][seeds]
            self.times[seed_type].append(seed_time)
        self.counts = {nt: [0] for nt in graph.num_nodes}
        self.counts[seed_type] = [seeds.numel()]

    def seed_time(self, nt: NodeType) -> Optional[Tensor]:
        if not self.temporal:
            return None
        parts = self.times[nt]
        return torch.cat(parts) if parts else \
            self.graph.time[nt].new_empty(0)

    def nodes(self) -> Tuple[Dict[NodeType, Tensor],
                             Optional[Dict[NodeType, Tensor]]]:
        """Every type's ``n_id`` and (temporal sampling) seed times, each
        concatenated once."""
        return ({nt: s.n_id() for nt, s in self.sets.items()},
                {nt: self.seed_time(nt) for nt in self.sets}
                if self.temporal else None)

    def sample(self, edge_index, e_id, edge_counts, nodes=None) -> Sample:
        n_id, times = self.nodes() if nodes is None else nodes
        return Sample(n_id, edge_index, e_id, times, self.counts,
                      edge_counts)


def neighbor_sample(graph: Graph, seed_type: NodeType, seeds: Tensor,
                    num_neighbors: Dict[EdgeType, List[int]],
                    generator: Optional[torch.Generator] = None,
                    seed_time: Optional[Tensor] = None) -> Sample:
    """Uniform neighbour sampling without replacement over ``len`` of the
    lists in ``num_neighbors`` hops: at hop ``h`` every node reached at
    hop ``h - 1`` (the seeds at hop 0) of edge type ``(s, r, t)``'s
    destination type ``t`` draws ``num_neighbors[(s, r, t)][h]`` of its
    in-neighbours (``-1``: all); the subgraph holds the drawn edges. With
    node times, a node's neighbours are those not later than the time of
    the seed it was reached from."""
    state = _State(graph, seed_type, seeds, seed_time)
    device = seeds.device
    num_hops = len(next(iter(num_neighbors.values()), []))
    rows: Dict[EdgeType, List[Tensor]] = {et: [] for et in graph.csc}
    cols = {et: [] for et in graph.csc}
    eids = {et: [] for et in graph.csc}
    edge_counts = {et: [] for et in graph.csc}
    # frontier: global ids, local ids, seed times of last hop's new nodes
    frontier = {seed_type: (seeds, torch.arange(seeds.numel(),
                                                device=device),
                            state.seed_time(seed_type))}
    for hop in range(num_hops):
        found: Dict[NodeType, List[tuple]] = {}
        for et, csc in graph.csc.items():
            k = num_neighbors[et][hop]
            if et[2] not in frontier or k == 0:
                continue
            nodes, local, bound = frontier[et[2]]
            start, count = eligible(graph, et, nodes, bound)
            offset, owner = uniform_without_replacement(count, k, generator)
            pos = start.index_select(0, owner) + offset
            src, e = csc.edges.index_select(0, pos).unbind(1)
            found.setdefault(et[0], []).append(
                (et, src, local.index_select(0, owner), e,
                 None if bound is None else bound.index_select(0, owner)))
        frontier = {}
        for nt, items in found.items():
            cand = torch.cat([item[1] for item in items])
            new, first = state.sets[nt].add(cand)
            state.counts[nt].append(new.numel())
            bound = None
            if state.temporal:
                bound = torch.cat([item[4] for item in items]).index_select(
                    0, first)
                state.times[nt].append(bound)
            frontier[nt] = (new, state.sets[nt].local(new), bound)
            for et, src, dst_local, e, _ in items:
                rows[et].append(state.sets[nt].local(src))
                cols[et].append(dst_local)
                eids[et].append(e)
        for nt in state.counts:
            if nt not in found:
                state.counts[nt].append(0)
        for et in graph.csc:
            n = sum(e.numel() for e in eids[et]) - sum(edge_counts[et])
            edge_counts[et].append(n)
    edge_index, e_id = {}, {}
    for et in graph.csc:
        empty = seeds.new_empty(0)
        edge_index[et] = torch.stack([torch.cat(rows[et] or [empty]),
                                      torch.cat(cols[et] or [empty])])
        e_id[et] = torch.cat(eids[et] or [empty])
    return state.sample(edge_index, e_id, edge_counts)


def hgt_sample(graph: Graph, seed_type: NodeType, seeds: Tensor,
               num_samples: Dict[NodeType, List[int]],
               max_neighbors: Optional[int] = None,
               generator: Optional[torch.Generator] = None,
               seed_time: Optional[Tensor] = None) -> Sample:
    """HGSampling (HGT paper, Algorithm 1): every newly sampled node adds
    ``1 / deg`` to the budget of each in-neighbour not sampled yet (with
    ``max_neighbors``, a node of larger degree adds ``1 / max_neighbors``
    to that many of them drawn uniformly, the same in expectation); per
    hop and type ``num_samples[type][hop]`` nodes are drawn without
    replacement with probability proportional to the squared budget; the
    subgraph is the one induced by all sampled nodes. With node times, a
    node's neighbours are those not later than its seed time; a budget
    node's seed time is the latest of the nodes that added to it."""
    state = _State(graph, seed_type, seeds, seed_time)
    device = seeds.device
    budget = {nt: torch.zeros(n, dtype=torch.float64, device=device)
              for nt, n in graph.num_nodes.items()}
    reach = {nt: graph.time[nt].new_full((n, ), torch.iinfo(
        torch.long).min) for nt, n in graph.num_nodes.items()} \
        if state.temporal else None
    cap = -1 if max_neighbors is None else max_neighbors

    def add_budget(new: Dict[NodeType, Tuple[Tensor, Optional[Tensor]]]):
        for et, csc in graph.csc.items():
            if et[2] not in new:
                continue
            nodes, bound = new[et[2]]
            start, count = eligible(graph, et, nodes, bound)
            offset, owner = uniform_without_replacement(count, cap,
                                                        generator)
            nbr = csc.edges[:, 0].index_select(
                0, start.index_select(0, owner) + offset)
            share = count if cap < 0 else count.clamp_max(cap)
            weight = 1.0 / share[owner].double()
            keep = state.sets[et[0]].local(nbr) < 0
            budget[et[0]].index_add_(0, nbr[keep], weight[keep])
            if reach is not None:
                reach[et[0]].scatter_reduce_(0, nbr[keep],
                                             bound[owner][keep], 'amax')
        for nt, (nodes, _) in new.items():
            budget[nt][nodes] = 0

    add_budget({seed_type: (seeds, state.seed_time(seed_type))})
    num_hops = len(next(iter(num_samples.values()), []))
    for hop in range(num_hops):
        new = {}
        for nt, sizes in num_samples.items():
            if sizes[hop] == 0:
                continue
            drawn = weighted_without_replacement(budget[nt].square(),
                                                 sizes[hop], generator)
            state.sets[nt].add(drawn)
            state.counts[nt].append(drawn.numel())
            bound = None
            if reach is not None:
                bound = reach[nt][drawn]
                state.times[nt].append(bound)
            new[nt] = (drawn, bound)
        for nt in state.counts:
            if nt not in new:
                state.counts[nt].append(0)
        add_budget(new)
    n_id, times = nodes = state.nodes()
    edge_index, e_id = {}, {}
    for et, csc in graph.csc.items():
        start, count = eligible(graph, et, n_id[et[2]],
                                None if times is None else times[et[2]])
        pos, owner = segments(start, count)
        src, e = csc.edges.index_select(0, pos).unbind(1)
        src = state.sets[et[0]].local(src)
        keep = src >= 0
        edge_index[et] = torch.stack([src[keep], owner[keep]])
        e_id[et] = e[keep]
    return state.sample(edge_index, e_id,
                        {et: [e.numel()] for et, e in e_id.items()}, nodes)
