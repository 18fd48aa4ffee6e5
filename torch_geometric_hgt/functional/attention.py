"""The edge phase of HGT as one function over the backends."""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.functional import dispatch
from torch_geometric_hgt.functional.backends.chunked import \
    chunked_attention
from torch_geometric_hgt.functional.backends.pair_fold import \
    pair_fold_attention
from torch_geometric_hgt.functional.backends.vectorized import \
    vectorized_attention
from torch_geometric_hgt.functional.linear import query_fold
from torch_geometric_hgt.functional.plan import PairPlan


def hgt_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    edge_index: Tensor,
    edge_type: Tensor,
    relation_att: Tensor,
    relation_pri: Tensor,
    relation_msg: Tensor,
    *,
    rte: Optional[Tuple[Tensor, Tensor]] = None,
    edge_mask: Optional[Tensor] = None,
    backend: str = 'auto',
    chunk_size: dispatch.ChunkSize = 'auto',
    blocks: Optional[Tuple[Sequence[int], Sequence[int]]] = None,
    memory_budget: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    r"""The attention and aggregation of HGT. For an edge :math:`e = s \to
    t` of relation :math:`r` and head :math:`h` (:math:`d` features per
    head)

    .. math::
        \alpha_{e,h} = \mathrm{softmax}_{e' \to t}\Big(
        \frac{\mu_{r,h}}{\sqrt d}\, Q_h(t) \cdot \big(K_h(s) A_{r,h}\big)
        \Big), \qquad
        \mathrm{agg}_h(t) = \sum_{e \to t} m_e\, \alpha_{e,h}\,
        V_h(s) M_{r,h},

    the softmax in float32 or wider over each target's in-edges (targets
    without one get 0), :math:`m_e` the explanation mask (1 without one),
    and with ``rte`` the temporal encoding added to :math:`K(s)` and
    :math:`V(s)`. Every backend computes exactly this; which one runs is
    :func:`~torch_geometric_hgt.functional.dispatch.select_backend`'s
    choice.

    Args:
        q, k, v (Tensor): Queries, keys and values ``[N, H, d]`` of one
            node set (sources and targets index the same rows).
        edge_index (Tensor): ``[2, E]`` (source, target).
        edge_type (Tensor): Relation of each edge ``[E]``, in ``[0, R)``.
        relation_att, relation_msg (Tensor): :math:`A`, :math:`M` ``[R, H,
            d, d]``.
        relation_pri (Tensor): :math:`\mu` ``[R, H]``.
        rte (Tuple[Tensor, Tensor], optional): The temporal encoding's key
            and value table ``[rows, 2 H d]`` and each edge's row of it
            ``[E]``. (default: :obj:`None`)
        edge_mask (Tensor, optional): :math:`m` ``[E]``, multiplying each
            message after the softmax as PyG's ``explain_message`` does.
            (default: :obj:`None`)
        backend (str, optional): One of
            :data:`~torch_geometric_hgt.functional.dispatch.BACKENDS`.
            (default: :obj:`"auto"`)
        chunk_size (int, str or None, optional): Edges per chunk of the
            chunked backends (speed and memory only). (default:
            :obj:`"auto"`)
        blocks (Tuple[List[int], List[int]], optional): ``(sizes,
            target)``: the nodes as consecutive blocks of ``sizes[b]`` rows
            (PyG's layout, a block per node type) and the block
            ``target[r]`` relation ``r`` points into, which lets the
            pair-folded backend work on slices. (default: :obj:`None`)
        memory_budget (int, optional): Bytes the call may allocate beyond
            its inputs (outputs, backward and gradients included), by
            :func:`~torch_geometric_hgt.functional.dispatch.working_memory`'s
            estimate: ``'auto'`` then takes the fastest backend that fits,
            an automatic chunk size shrinks to fit, and a budget nothing
            fits raises a :class:`ValueError`. (default: :obj:`None`)

    Returns:
        ``(agg [N, H, d], alpha [E, H])``, ``alpha`` unmasked and without
        gradient from the chunked backends (for inspection); ``agg`` in
        float32 from ``'memory_efficient'``.
    """
    dispatch.check_backend(backend)
    dispatch.check_chunk_size(chunk_size)
    dispatch.check_memory_budget(memory_budget)
    N, R, E = q.size(0), relation_att.size(0), edge_type.numel()
    inputs = (q, k, v, relation_att, relation_pri, relation_msg) + \
        (() if rte is None else (rte[0], ))
    work = dispatch.Workload(
        N, E, R, q.size(1), q.size(2), q.element_size(),
        torch.is_grad_enabled() and any(t.requires_grad for t in inputs))
    name, chunk, layout = dispatch.choose(backend, chunk_size, q.device,
                                          work, edge_mask is not None,
                                          memory_budget, blocks)
    if name == 'vectorized':
        return vectorized_attention(q, k, v, edge_index, edge_type,
                                    relation_att, relation_pri, relation_msg,
                                    rte, edge_mask)
    # folded before the plan's edge-sized tensors exist, as the old block
    # fold did: the order of allocations decides which freed heap blocks
    # glibc reuses at default settings
    w_q = query_fold(relation_att, relation_pri)
    plan = PairPlan.build(layout, edge_index, edge_type, N, R, blocks)
    if name == 'memory_efficient':
        return chunked_attention(q, k, v, plan, w_q, relation_msg, chunk,
                                 rte)
    return pair_fold_attention(q, k, v, plan, w_q, relation_msg, chunk, rte)
