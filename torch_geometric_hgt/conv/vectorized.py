from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from torch_geometric_hgt.ops import query_fold, scatter_sum, segment_softmax
from torch_geometric_hgt.conv.base import SparseHGTConv


class VectorizedHGTConv(SparseHGTConv):
    r"""HGT (the semantics of :class:`LoopHGTConv`) without any Python loop
    over types, relations, nodes or edges.

    Linear maps run per node: :math:`K, Q, V` by one GEMM against all type
    weights followed by a gather; the relation key transform is folded onto
    the query side, :math:`Q_h(t) \cdot (K_h(s) A_{r,h}) = (A_{r,h} Q_h(t))
    \cdot K_h(s)`, computed per (node, relation); the message transform is
    applied after aggregation per (target, relation), :math:`\sum_e \alpha_e
    V(s_e) M_r = (\sum_e \alpha_e V(s_e)) M_r`. Memory is
    :math:`O(E F + N R F)`; no host sync, so it traces under
    ``torch.compile(fullgraph=True, dynamic=True)``.

    Args: as :class:`~torch_geometric_hgt.params.HGTParameters`.

    Shapes: as :class:`LoopHGTConv`.
    """
    def forward(self, x: Tensor, node_type: Tensor, edge_index: Tensor,
                edge_type: Tensor, edge_time: Optional[Tensor] = None,
                return_attention_weights: bool = False,
                edge_mask: Optional[Tensor] = None
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        self.check_sparse(x, node_type, edge_index, edge_type, edge_time)
        self.check_edge_mask(edge_mask, edge_type)
        out, alpha = self.vectorized(x, node_type, edge_index, edge_type,
                                     edge_time, edge_mask)
        return self._result(out, alpha, return_attention_weights)


def vectorized_attention(q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor,
                         edge_type: Tensor, relation_att: Tensor,
                         relation_pri: Tensor, relation_msg: Tensor,
                         rte: Optional[Tuple[Tensor, Tensor]] = None,
                         edge_mask: Optional[Tensor] = None
                         ) -> Tuple[Tensor, Tensor]:
    """The edge phase of :class:`VectorizedHGTConv` with the arguments and
    result of :func:`~torch_geometric_hgt.conv.fused.fused_attention`:
    plain torch ops on ``[E, H, d]`` rows, no host sync. ``edge_mask``
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
