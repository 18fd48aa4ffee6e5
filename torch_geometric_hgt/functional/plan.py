r"""The one plan of the pair-folded backends: each edge's (target,
relation) pair row, the edges sorted by it, and the two maps on pair rows,
:math:`\tilde q_{(t, r)} = Q_t \tilde A_r` and :math:`\mathrm{agg}_t =
\sum_r u_{(t, r)} M_r`, on head-major ``[H, rows, d]`` tensors. Layouts:
``'dense'`` (row ``t R + r`` for all pairs; one batched GEMM per head),
``'compact'`` (only the pairs that occur, relation by relation, when ``N
R`` exceeds the edges) and ``'blocks'`` (PyG's consecutive node blocks:
relation ``r``'s rows are its target block's, one GEMM on a slice).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.functional.linear import (fold_pairs,
                                                   fold_pairs_backward,
                                                   sum_pairs,
                                                   sum_pairs_backward)


class Group(NamedTuple):
    """Rows ``[start, end)`` of relation ``relation``, one per node of
    ``nodes`` (an index), or in the ``'blocks'`` layout (``nodes`` empty)
    of node block ``block``, rows ``bounds = (lo, hi)``."""
    relation: int
    start: int
    end: int
    nodes: Tensor
    block: Optional[int]
    bounds: Optional[Tuple[int, int]]


class PairPlan:
    """Edges sorted by pair row and the rows' layout (module docstring).

    Attributes:
        src, dst (Tensor): Sorted edges' source and target ``[E]``.
        pair (Tensor): Sorted edges' pair row ``[E]`` (non-decreasing).
        perm (Tensor): Input position of each sorted edge ``[E]``.
        num_nodes, num_pairs (int): Node and pair rows.
        groups (List[Group], optional): :obj:`None` for ``'dense'``.
    """
    def __init__(self, edge_index: Tensor, key: Tensor, num_nodes: int,
                 num_pairs: int, groups: Optional[List[Group]] = None,
                 block_sizes: Optional[List[int]] = None):
        self.perm = torch.argsort(key)
        self.pair = key.index_select(0, self.perm)
        self.src = edge_index[0].index_select(0, self.perm)
        self.dst = edge_index[1].index_select(0, self.perm)
        self.num_nodes, self.num_pairs = num_nodes, num_pairs
        self.groups, self.block_sizes = groups, block_sizes

    @classmethod
    def build(cls, layout: str, edge_index: Tensor, edge_type: Tensor,
              num_nodes: int, num_relations: int,
              blocks: Optional[Tuple[Sequence[int], Sequence[int]]] = None
              ) -> 'PairPlan':
        """The plan in ``layout`` (``'dense'``, ``'compact'``; ``'blocks'``
        takes ``blocks = (sizes, target)``: ``sizes[b]`` rows per node
        block and relation ``r``'s target block ``target[r]``)."""
        N, R = num_nodes, num_relations
        dst = edge_index[1]
        if layout == 'dense':
            return cls(edge_index, dst * R + edge_type, N, N * R)
        if layout == 'blocks':
            sizes, target = list(blocks[0]), blocks[1]
            lo = [sum(sizes[:b]) for b in range(len(sizes))]
            groups, start = [], 0
            for r, b in enumerate(target):
                groups.append(Group(r, start, start + sizes[b],
                                    dst.new_empty(0), b,
                                    (lo[b], lo[b] + sizes[b])))
                start += sizes[b]
            shift = torch.tensor([g.start - g.bounds[0] for g in groups],
                                 dtype=torch.long, device=dst.device)
            return cls(edge_index, dst + shift.index_select(0, edge_type),
                       N, start, groups, sizes)
        plan = cls(edge_index, edge_type * N + dst, N, 0)
        pairs, plan.pair = torch.unique_consecutive(plan.pair,
                                                    return_inverse=True)
        rel = torch.div(pairs, N, rounding_mode='floor')
        nodes = pairs - rel * N
        plan.num_pairs, plan.groups, start = pairs.numel(), [], 0
        for r, c in enumerate(torch.bincount(rel, minlength=R).tolist()):
            if c:
                plan.groups.append(Group(r, start, start + c,
                                         nodes[start:start + c], None,
                                         None))
            start += c
        return plan

    def unsort(self, alpha: Tensor) -> Tensor:
        """Per-edge rows ``[H, E]`` in sorted order -> ``[E, H]`` in input
        order."""
        return torch.empty_like(alpha.t()).index_copy_(0, self.perm,
                                                       alpha.t())

    def rows(self, t: Tensor, g: Group) -> Tensor:
        """The node rows of group ``g`` from ``t [H, N, d]`` (no autograd:
        the maps below take splits, whose backward writes each gradient
        once where a slice's would write a full-size one)."""
        if g.bounds is not None:
            return t[:, g.bounds[0]:g.bounds[1]]
        return t.index_select(1, g.nodes)

    def fold_queries(self, q: Tensor, w_q: Tensor,
                     out: Optional[Tensor] = None) -> Tensor:
        """``[H, P, d]``: each pair's ``q[t] @ w_q[r]`` per head, from ``q
        [H, N, d]`` and ``w_q [R, H, d, d]`` (into ``out`` if given)."""
        if self.groups is None:
            return fold_pairs(q, w_q, out)
        H, N, d = q.shape
        w_q = w_q.to(q.dtype)
        blocks = None
        if self.block_sizes is not None:
            # split node-major, then per block head-major: backward then
            # concatenates node-major gradient rows, which the projections'
            # backward reads contiguously
            blocks = [b.transpose(0, 1) for b in
                      q.transpose(0, 1).split(self.block_sizes)]
        parts = [torch.bmm(q.index_select(1, g.nodes) if blocks is None else
                           blocks[g.block], w_q[g.relation])
                 for g in self.groups]
        return torch.cat(parts or [q.new_empty(H, 0, d)], 1, out=out)

    def sum_messages(self, u: Tensor, w_msg: Tensor,
                     out: Optional[Tensor] = None) -> Tensor:
        """``[H, N, d]``: ``sum_r u[(t, r)] @ w_msg[r]`` per head (into
        ``out`` if given)."""
        if self.groups is None:
            return sum_pairs(u, w_msg, out)
        H, _, d = u.shape
        N = self.num_nodes
        w_msg = w_msg.to(u.dtype)
        rows = u.split([g.end - g.start for g in self.groups], 1)
        # each relation's product is summed in as soon as it exists: no
        # [H, P, d] of them at once
        if self.block_sizes is None:
            agg = u.new_zeros(H, N, d) if out is None else out.zero_()
            for g, ur in zip(self.groups, rows):
                agg.index_add_(1, g.nodes, torch.bmm(ur, w_msg[g.relation]))
            return agg
        # sums per block, then one concatenation
        by_block: List[Optional[Tensor]] = [None] * len(self.block_sizes)
        for g, ur in zip(self.groups, rows):
            part, prev = torch.bmm(ur, w_msg[g.relation]), by_block[g.block]
            by_block[g.block] = part if prev is None else prev + part
        return torch.cat([u.new_zeros(H, n, d) if b is None else b
                          for b, n in zip(by_block, self.block_sizes)] or
                         [u.new_zeros(H, N, d)], 1, out=out)

    def fold_queries_backward(self, d_qr: Tensor, q: Tensor, w_q: Tensor,
                              d_q: Tensor) -> Tensor:
        """Writes ``d_q [H, N, d]`` and returns ``d w_q [R, H, d, d]``."""
        if self.groups is None:
            return fold_pairs_backward(d_qr, q, w_q, d_q)
        d_w_q = torch.zeros_like(w_q)
        d_q.zero_()
        for g in self.groups:
            grad = d_qr[:, g.start:g.end]
            d_w_q[g.relation] = torch.bmm(self.rows(q, g).transpose(1, 2),
                                          grad)
            self.add_rows(d_q, g, torch.bmm(
                grad, w_q[g.relation].transpose(1, 2)))
        return d_w_q

    def sum_messages_backward(self, d_agg: Tensor, u: Tensor, w_msg: Tensor,
                              du: Tensor) -> Tensor:
        """Writes ``du [H, P, d]`` and returns ``d w_msg [R, H, d, d]``."""
        if self.groups is None:
            return sum_pairs_backward(d_agg, u, w_msg, du)
        d_w_msg = torch.zeros_like(w_msg)
        for g in self.groups:
            grad = self.rows(d_agg, g)
            d_w_msg[g.relation] = torch.bmm(
                u[:, g.start:g.end].transpose(1, 2), grad)
            du[:, g.start:g.end] = torch.bmm(
                grad, w_msg[g.relation].transpose(1, 2))
        return d_w_msg

    def add_rows(self, out: Tensor, g: Group, part: Tensor) -> None:
        """``out``'s node rows of group ``g`` += ``part`` (in place)."""
        if g.bounds is not None:
            out[:, g.bounds[0]:g.bounds[1]] += part
        else:
            out.index_add_(1, g.nodes, part)


class TargetChunks:
    """Edges sorted by ``key = target * R + relation``, cut into chunks of
    whole targets holding about ``chunk`` edges (and at most ``chunk``
    targets), so that every softmax lies inside one chunk: the plan of the
    ``'memory_efficient'`` backend.

    Attributes:
        bounds (List[Tuple[int, int, int, int]]): ``(n0, n1, e0, e1)`` per
            chunk: targets ``[n0, n1)``, sorted edges ``[e0, e1)``.
    """
    def __init__(self, key: Tensor, src: Tensor, num_nodes: int,
                 num_relations: int, chunk: int):
        N, E, R, dev = num_nodes, key.numel(), num_relations, key.device
        self.key, self.src, self.num_nodes, self.R = key, src, N, R
        ptr = torch.searchsorted(key, torch.arange(N + 1, device=dev) * R)
        # a chunk ends every `chunk` nodes and before the target of every
        # `chunk`-th edge
        starts = torch.cat([
            torch.arange(0, N, chunk, device=dev),
            torch.searchsorted(ptr, torch.arange(0, E, chunk, device=dev),
                               right=True) - 1,
            torch.tensor([N], device=dev)
        ]).unique()
        nodes, edges = starts.tolist(), ptr.index_select(0, starts).tolist()
        self.bounds = list(zip(nodes[:-1], nodes[1:], edges[:-1],
                               edges[1:]))

    def edges(self, n0: int, e0: int, e1: int) -> Tuple[Tensor, Tensor,
                                                         Tensor]:
        """``(src, dst, pair)`` of sorted edges ``[e0, e1)``, targets and
        pair rows (``t R + r``) numbered within the chunk that starts at
        target ``n0``."""
        pair = self.key[e0:e1] - n0 * self.R
        return (self.src[e0:e1], torch.div(pair, self.R,
                                           rounding_mode='floor'), pair)

    def source_order(self) -> Tensor:
        """Edge positions with each chunk's edges grouped by source: one
        sort for all chunks instead of one per chunk and pass."""
        sizes = torch.tensor([e1 - e0 for _, _, e0, e1 in self.bounds],
                             dtype=torch.long, device=self.src.device)
        chunk_id = torch.repeat_interleave(
            torch.arange(sizes.numel(), device=sizes.device), sizes)
        return torch.argsort(chunk_id * self.num_nodes + self.src,
                             stable=True)

    @staticmethod
    def sources(src: Tensor, order: Tensor
                ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """A chunk's distinct sources and, over them, the edges' order and
        CSR offsets (``sorted_rows`` of the edge operator), given its
        edges' order by source."""
        uniq, counts = torch.unique_consecutive(src.index_select(0, order),
                                                return_counts=True)
        offsets = torch.nn.functional.pad(counts.cumsum(0), (1, 0))
        return uniq, (order, offsets)
