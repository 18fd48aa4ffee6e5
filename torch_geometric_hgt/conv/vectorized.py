from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt.ops import scatter_sum, segment_softmax, typed_linear
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
                return_attention_weights: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        self.check_sparse(x, node_type, edge_index, edge_type, edge_time)
        N, R, H, d, D = (x.size(0), self.num_relations, self.n_heads,
                         self.d_k, self.out_dim)
        src, dst = edge_index[0], edge_index[1]
        kqv = typed_linear(x, node_type, *self.kqv_weight())
        k, q, v = kqv.split(D, dim=-1)
        k_e, v_e = k.index_select(0, src), v.index_select(0, src)
        if self.use_RTE:
            rows = node_type.index_select(0, src) * self.max_len + edge_time
            kv_t = self.rte_kv_table().index_select(0, rows)
            k_e, v_e = k_e + kv_t[:, :D], v_e + kv_t[:, D:]

        scale = (self.relation_pri / self.sqrt_dk).view(1, R, H, 1)
        q_rel = torch.einsum('nhf,rhdf->nrhd', q.reshape(N, H, d),
                             self.relation_att) * scale
        pair = dst * R + edge_type
        score = (q_rel.reshape(N * R, H, d).index_select(0, pair) *
                 k_e.view(-1, H, d)).sum(-1)
        alpha = segment_softmax(score, dst, N)

        u = scatter_sum(v_e.view(-1, H, d) * alpha.unsqueeze(-1), pair, N * R)
        agg = torch.einsum('nrhd,rhdf->nhf', u.view(N, R, H, d),
                           self.relation_msg).reshape(N, D)
        a_out = typed_linear(F.gelu(agg), node_type, *self.a_weight())
        out = self.update_hard(x, node_type, a_out)
        return self._result(out, alpha, return_attention_weights)
