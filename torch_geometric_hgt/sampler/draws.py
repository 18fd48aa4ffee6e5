"""Vectorized draws of neighbours, one group of candidates per frontier
node, and the node sets that relabel what is drawn. No Python loop runs
over nodes or edges: loops run over the fan-out at most.

A group is a run ``[start, start + count)`` of one node's eligible
in-edges; every draw returns ``(offset, owner)``: offsets into the groups
and the group each belongs to, grouped by owner."""
from typing import Optional, Tuple

import torch
from torch import Tensor


def segments(start: Tensor, count: Tensor) -> Tuple[Tensor, Tensor]:
    """Positions ``start[i] .. start[i] + count[i] - 1`` of every ``i``,
    concatenated, and the ``i`` each belongs to."""
    owner = torch.repeat_interleave(
        torch.arange(count.numel(), device=count.device), count)
    shift = (start - torch.cumsum(count, 0) + count).index_select(0, owner)
    return torch.arange(owner.numel(), device=count.device) + shift, owner


def uniform_without_replacement(count: Tensor, k: int,
                                generator: Optional[torch.Generator]
                                ) -> Tuple[Tensor, Tensor]:
    """For every group, ``min(k, count)`` distinct offsets in ``[0,
    count)``, each subset equally likely (all offsets where ``k < 0`` or
    ``count <= k``).

    Groups larger than ``k`` run Floyd's algorithm side by side: ``k``
    steps, each one draw per group, so the work is ``O(groups k^2)``
    whatever the group sizes.
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


def uniform_with_replacement(count: Tensor, k: int,
                             generator: Optional[torch.Generator]
                             ) -> Tuple[Tensor, Tensor]:
    """``k`` independent uniform offsets per non-empty group (all offsets,
    once each, where ``k < 0``)."""
    if k < 0:
        return segments(torch.zeros_like(count), count)
    owner = (count > 0).nonzero().view(-1).repeat_interleave(k)
    u = torch.rand(owner.numel(), dtype=torch.float64, device=count.device,
                   generator=generator)
    n = count.index_select(0, owner)
    return torch.minimum((u * n).long(), n - 1), owner


def last(count: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The last ``min(k, count)`` offsets of every group (all where
    ``k < 0``): the most recent neighbours of a time-sorted group."""
    take = count if k < 0 else count.clamp_max(k)
    return segments(count - take, take)


def weighted(weight: Tensor, start: Tensor, count: Tensor, k: int,
             replace: bool, generator: Optional[torch.Generator]
             ) -> Tuple[Tensor, Tensor]:
    """Offsets drawn with probability proportional to ``weight[start +
    offset]``; zero weights are never drawn. Without replacement, draws
    follow one another among those not drawn yet (as
    :func:`torch.multinomial`), by the Gumbel top-k trick per group; with
    replacement, ``k`` independent draws per group of positive total
    weight, by inverting the cumulative weights. ``k < 0`` takes every
    positive-weight offset."""
    pos, owner = segments(start, count)
    w = weight.index_select(0, pos).double()
    if k < 0:
        keep = (w > 0).nonzero().view(-1)
        return (pos - start.index_select(0, owner))[keep], owner[keep]
    if not replace:
        u = torch.rand(pos.numel(), dtype=torch.float64, device=pos.device,
                       generator=generator)
        key = w.log() - (-u.log()).log()
        # best key first within each group: sort by key, then stably by
        # owner, so each group's candidates are ranked
        order = key.argsort(descending=True)
        order = order[owner[order].argsort(stable=True)]
        first = torch.cumsum(count, 0) - count
        rank = torch.arange(order.numel(), device=pos.device) - \
            first.index_select(0, owner[order])
        keep = order[(rank < k) & (w[order] > 0)]
        keep = keep.sort().values
        return (pos - start.index_select(0, owner))[keep], owner[keep]
    cum = torch.cumsum(w, 0)
    base = torch.cat([cum.new_zeros(1), cum])
    first = torch.cumsum(count, 0) - count
    lo, hi = base.index_select(0, first), base.index_select(0, first + count)
    groups = (hi > lo).nonzero().view(-1).repeat_interleave(k)
    u = torch.rand(groups.numel(), dtype=torch.float64, device=pos.device,
                   generator=generator)
    target = lo[groups] + u * (hi[groups] - lo[groups])
    at = torch.searchsorted(cum, target, right=True)
    at = torch.minimum(torch.maximum(at, first[groups]),
                       first[groups] + count[groups] - 1)
    return at - first[groups], groups


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


FAR = torch.iinfo(torch.long).max


class NodeSet:
    """The map global -> local (``-1`` where not sampled) of the sampled
    nodes of one type, an array over the type's nodes, so a look-up is one
    gather; locals count in sampling order."""

    def __init__(self, num_nodes: int, device: torch.device):
        self.assoc = torch.full((num_nodes, ), -1, dtype=torch.long,
                                device=device)
        self.size = 0
        # first position of each id in the call's candidates; reset after
        # each call, so a call costs O(candidates), not O(num_nodes)
        self.first = torch.full((num_nodes, ), FAR, dtype=torch.long,
                                device=device)

    def add_seeds(self, seeds: Tensor):
        """Seeds first, as given (a repeated seed keeps every position; its
        global id maps to the first)."""
        pos = torch.arange(self.size, self.size + seeds.numel(),
                           device=seeds.device)
        self.assoc.scatter_reduce_(0, seeds, pos, 'amin', include_self=False)
        self.size += seeds.numel()

    def add(self, cand: Tensor) -> Tensor:
        """Appends the nodes of ``cand`` not sampled yet, each once, in
        order of first appearance. Returns the position in ``cand`` where
        each new node first appears."""
        pos = torch.arange(cand.numel(), device=cand.device)
        self.first.scatter_reduce_(0, cand, pos, 'amin')
        first = ((self.first.index_select(0, cand) == pos) &
                 (self.assoc.index_select(0, cand) < 0)).nonzero().view(-1)
        self.first.index_fill_(0, cand, FAR)
        new = cand.index_select(0, first)
        self.assoc.index_copy_(0, new, torch.arange(
            self.size, self.size + new.numel(), device=new.device))
        self.size += new.numel()
        return first

    def local(self, ids: Tensor) -> Tensor:
        return self.assoc.index_select(0, ids)


class KeyedNodeSet:
    """The sampled ``(example, node)`` pairs of one type for disjoint
    subgraphs, keyed ``example * num_nodes + node``: the same interface as
    :class:`NodeSet` on keys, kept as a sorted key array (searched with
    :func:`torch.searchsorted`), since the key space is too large for an
    array over it."""

    def __init__(self, num_nodes: int, device: torch.device):
        self.keys = torch.empty(0, dtype=torch.long, device=device)
        self.locals = torch.empty(0, dtype=torch.long, device=device)
        self.size = 0

    def _insert(self, keys: Tensor, local: Tensor):
        keys, order = torch.sort(torch.cat([self.keys, keys]), stable=True)
        self.keys = keys
        self.locals = torch.cat([self.locals, local]).index_select(0, order)

    def add_seeds(self, keys: Tensor):
        """Seeds first (keys of distinct examples never repeat)."""
        pos = torch.arange(self.size, self.size + keys.numel(),
                           device=keys.device)
        self._insert(keys, pos)
        self.size += keys.numel()

    def add(self, cand: Tensor) -> Tensor:
        uniq, inverse = torch.unique(cand, return_inverse=True)
        pos = torch.arange(cand.numel(), device=cand.device)
        first = torch.full_like(uniq, FAR).scatter_reduce_(
            0, inverse, pos, 'amin')
        first = first[self.local(uniq) < 0].sort().values
        self._insert(cand.index_select(0, first), torch.arange(
            self.size, self.size + first.numel(), device=cand.device))
        self.size += first.numel()
        return first

    def local(self, keys: Tensor) -> Tensor:
        if self.keys.numel() == 0:
            return torch.full_like(keys, -1)
        at = torch.searchsorted(self.keys, keys).clamp_max(
            self.keys.numel() - 1)
        hit = self.keys.index_select(0, at) == keys
        return torch.where(hit, self.locals.index_select(0, at),
                           torch.full_like(keys, -1))
