"""Per-node Python samplers, written straight from the algorithms, that the
vectorized loaders are judged against (and timed against in
``benchmarks/sampling.py``). Graphs are ``{edge type: [(src, dst), ...]}``
lists; randomness comes from :class:`random.Random`."""
import random
from collections import defaultdict
from typing import Dict, List, Optional, Tuple


def in_neighbors(edges):
    """``{edge type: {dst: [(src, edge position), ...]}}``."""
    out = {}
    for et, pairs in edges.items():
        nbrs = defaultdict(list)
        for e, (s, d) in enumerate(pairs):
            nbrs[d].append((s, e))
        out[et] = nbrs
    return out


class _Nodes:
    def __init__(self):
        self.order: List[int] = []
        self.local: Dict[int, int] = {}

    def add(self, v: int) -> bool:
        if v in self.local:
            return False
        self.local[v] = len(self.order)
        self.order.append(v)
        return True


def neighbor_sample(edges, node_types, seed_type, seeds, num_neighbors,
                    rng: random.Random, nbrs=None, keep=None):
    """Uniform neighbour sampling; returns ``(n_id, {et: [(src local, dst
    local, e_id)]})``. ``nbrs``: :func:`in_neighbors` of ``edges``, if
    built already; ``keep(et, src, e_id)``: whether an in-edge is
    eligible (all are without it)."""
    nbrs = nbrs or in_neighbors(edges)
    nodes = {nt: _Nodes() for nt in node_types}
    for s in seeds:
        nodes[seed_type].add(s)
    frontier = {seed_type: list(dict.fromkeys(seeds))}
    out = {et: [] for et in edges}
    hops = len(next(iter(num_neighbors.values())))
    for hop in range(hops):
        found = defaultdict(list)
        for et in edges:
            k = num_neighbors[et][hop]
            for v in frontier.get(et[2], []):
                cand = [(s, e) for s, e in nbrs[et].get(v, [])
                        if keep is None or keep(et, s, e)]
                if 0 <= k < len(cand):
                    cand = rng.sample(cand, k)
                for s, e in cand:
                    found[et[0]].append(s)
                    out[et].append((s, v, e))
        frontier = {nt: [v for v in vs if nodes[nt].add(v)]
                    for nt, vs in found.items()}
    edges_local = {et: [(nodes[et[0]].local[s], nodes[et[2]].local[v], e)
                        for s, v, e in triples]
                   for et, triples in out.items()}
    return {nt: n.order for nt, n in nodes.items()}, edges_local


def _draw(budget: Dict[int, float], k: int, rng: random.Random) -> List[int]:
    """``k`` keys without replacement, each draw proportional to the
    squared budget of those left."""
    cand = [(v, b * b) for v, b in budget.items() if b > 0]
    if len(cand) <= k:
        return [v for v, _ in cand]
    chosen = []
    for _ in range(k):
        total = sum(w for _, w in cand)
        x = rng.random() * total
        for i, (v, w) in enumerate(cand):
            x -= w
            if x < 0 or i == len(cand) - 1:
                chosen.append(v)
                cand.pop(i)
                break
    return chosen


def hgt_sample(edges, node_types, seed_type, seeds, num_samples,
               rng: random.Random, max_neighbors: Optional[int] = None,
               nbrs=None) -> Tuple[dict, dict]:
    """HGSampling; returns ``(n_id, {et: [(src local, dst local, e_id)]})``
    of the induced subgraph. ``nbrs``: :func:`in_neighbors` of ``edges``,
    if built already."""
    nbrs = nbrs or in_neighbors(edges)
    nodes = {nt: _Nodes() for nt in node_types}
    budget = {nt: defaultdict(float) for nt in node_types}
    for s in seeds:
        nodes[seed_type].add(s)

    def add_budget(nt, new):
        for et in edges:
            if et[2] != nt:
                continue
            for v in new:
                cand = nbrs[et].get(v, [])
                if not cand:
                    continue
                weight = 1.0 / len(cand)
                if max_neighbors is not None and len(cand) > max_neighbors:
                    cand = rng.sample(cand, max_neighbors)
                    weight = 1.0 / max_neighbors
                for s, _ in cand:
                    if s not in nodes[et[0]].local:
                        budget[et[0]][s] += weight
        for v in new:
            budget[nt].pop(v, None)

    add_budget(seed_type, list(seeds))
    hops = len(next(iter(num_samples.values())))
    for hop in range(hops):
        new = {}
        for nt in node_types:
            new[nt] = _draw(budget[nt], num_samples[nt][hop], rng)
            for v in new[nt]:
                nodes[nt].add(v)
        for nt, vs in new.items():
            add_budget(nt, vs)
    out = {}
    for et in edges:
        src = nodes[et[0]].local
        out[et] = [(src[s], i, e)
                   for i, d in enumerate(nodes[et[2]].order)
                   for s, e in nbrs[et].get(d, []) if s in src]
    return {nt: n.order for nt, n in nodes.items()}, out
