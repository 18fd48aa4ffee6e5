"""The ``'vectorized'`` backend: the edge phase by per-edge gathers and
plain torch ops, differentiated by autograd, with no host sync (it traces
under ``torch.compile(fullgraph=True, dynamic=True)``). The relation key
transform is folded onto the query per (node, relation),
:math:`Q_h(t) \\cdot (K_h(s) A_{r,h}) = (A_{r,h} Q_h(t)) \\cdot K_h(s)`;
the message transform runs after aggregation per (target, relation),
:math:`\\sum_e \\alpha_e V(s_e) M_r = (\\sum_e \\alpha_e V(s_e)) M_r`.
Memory :math:`O(E F + N R F)`."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.functional.linear import query_fold
from torch_geometric_hgt.functional.softmax import segment_softmax

try:  # optional accelerator
    import torch_scatter
    HAS_TORCH_SCATTER = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_TORCH_SCATTER = False


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` into ``dim_size`` rows by ``index`` (dim 0)."""
    if HAS_TORCH_SCATTER and not torch.compiler.is_compiling():
        return torch_scatter.scatter(src, index, dim=0, dim_size=dim_size,
                                     reduce='sum')
    out = src.new_zeros((dim_size, ) + src.shape[1:])
    return out.index_add_(0, index, src)


def vectorized_attention(q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor,
                         edge_type: Tensor, relation_att: Tensor,
                         relation_pri: Tensor, relation_msg: Tensor,
                         rte: Optional[Tuple[Tensor, Tensor]] = None,
                         edge_mask: Optional[Tensor] = None
                         ) -> Tuple[Tensor, Tensor]:
    """``(agg [N, H, d], alpha [E, H])``, the arguments of
    :func:`~torch_geometric_hgt.functional.hgt_attention`. ``edge_mask``
    ``[E]`` scales each edge's message after the softmax, as PyG's
    ``MessagePassing.explain_message`` does; ``alpha`` stays unmasked."""
    (N, H, d), R = q.shape, relation_att.size(0)
    src, dst = edge_index[0], edge_index[1]
    k_e, v_e = k.index_select(0, src), v.index_select(0, src)
    if rte is not None:
        kv_t = rte[0].index_select(0, rte[1]).view(-1, 2, H, d)
        k_e, v_e = k_e + kv_t[:, 0], v_e + kv_t[:, 1]
    q_rel = torch.einsum('nhf,rhfd->nrhd', q, query_fold(relation_att,
                                                         relation_pri))
    pair = dst * R + edge_type
    score = (q_rel.reshape(N * R, H, d).index_select(0, pair) *
             k_e).sum(-1)
    alpha = segment_softmax(score, dst, N)
    weight = alpha if edge_mask is None else \
        alpha * edge_mask.to(alpha.dtype).unsqueeze(-1)
    u = scatter_sum(v_e * weight.unsqueeze(-1), pair, N * R)
    agg = torch.einsum('nrhd,rhdf->nhf', u.view(N, R, H, d), relation_msg)
    return agg, alpha
