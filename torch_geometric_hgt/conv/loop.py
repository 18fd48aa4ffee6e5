from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.utils import softmax

from torch_geometric_hgt.conv.base import SparseHGTConv


class LoopHGTConv(SparseHGTConv):
    r"""The reference HGT layer: pyHGT's loop structure, one masked block per
    (source type, target type, relation) that occurs, then one per target
    type in the update. Slow by design; every other layer is tested against
    it. For every edge :math:`e = (s \to t)` of relation :math:`r`

    .. math::
        \mathrm{score}_h(e) = \frac{\mu_{r,h}}{\sqrt{d}}
        Q_h(t) \cdot \big(K_h(s) A_{r,h}\big), \qquad
        \mathrm{msg}_h(e) = V_h(s) M_{r,h},

    :math:`\alpha_h = \mathrm{softmax}` of the scores over the in-edges of
    each target, :math:`\mathrm{agg}(t) = \Vert_h \sum_e \alpha_h(e)
    \mathrm{msg}_h(e)`, and

    .. math::
        y = \mathrm{Norm}_{\tau(t)}\Big(\sigma(s_{\tau(t)})
        \mathrm{drop}\big(W^a_{\tau(t)} \mathrm{gelu}(\mathrm{agg}(t))\big)
        + (1 - \sigma(s_{\tau(t)})) x_t\Big)

    (the gate only when ``in_dim == out_dim``, the norm only with
    ``use_norm``). See ``docs/semantics.md``.

    Args: as :class:`~torch_geometric_hgt.params.HGTParameters`.

    Shapes:
        - **input:** ``x [N, in_dim]``, ``node_type [N]``,
          ``edge_index [2, E]`` (row 0 sources, row 1 targets),
          ``edge_type [E]``, ``edge_time [E]`` (only with ``use_RTE``),
          ``edge_mask [E]`` (optional: each message times its weight after
          attention, as PyG's ``explain_message``; every layer takes it)
        - **output:** ``[N, out_dim]``; with
          ``return_attention_weights=True`` also ``[E, H]`` (kept as
          ``self.att`` too, like pyHGT).
    """
    def forward(self, x: Tensor, node_type: Tensor, edge_index: Tensor,
                edge_type: Tensor, edge_time: Optional[Tensor] = None,
                return_attention_weights: bool = False,
                edge_mask: Optional[Tensor] = None
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        self.check_sparse(x, node_type, edge_index, edge_type, edge_time)
        self.check_edge_mask(edge_mask, edge_type)
        out = self.propagate(edge_index, node_inp=x, node_type=node_type,
                             edge_type=edge_type, edge_time=edge_time,
                             edge_weight=edge_mask,
                             size=(x.size(0), x.size(0)))
        att, self._att = self._att, None
        self.att = att if return_attention_weights else None
        return (out, att) if return_attention_weights else out

    def message(self, edge_index_i: Tensor, node_inp_i: Tensor,
                node_inp_j: Tensor, node_type_i: Tensor, node_type_j: Tensor,
                edge_type: Tensor, edge_time: Optional[Tensor],
                edge_weight: Optional[Tensor],
                size_i: Optional[int]) -> Tensor:
        E, H, d = edge_index_i.size(0), self.n_heads, self.d_k
        res_att = node_inp_i.new_zeros(E, H)
        res_msg = node_inp_i.new_zeros(E, H, d)
        for source_type in range(self.num_node_types):
            sb = node_type_j == source_type
            for target_type in range(self.num_node_types):
                tb = (node_type_i == target_type) & sb
                for relation_type in range(self.num_relations):
                    idx = (edge_type == relation_type) & tb
                    if not bool(idx.any()):
                        continue
                    src = node_inp_j[idx]
                    if self.use_RTE:
                        src = self.emb(src, edge_time[idx])
                    q = self.q_linears[target_type](node_inp_i[idx])
                    k = self.k_linears[source_type](src)
                    v = self.v_linears[source_type](src)
                    q, k, v = (m.view(-1, H, d) for m in (q, k, v))
                    k = torch.einsum('ehd,hdf->ehf', k,
                                     self.relation_att[relation_type])
                    # (cast: autocast's products are in lower precision,
                    # the buffers and so the softmax in x's dtype)
                    res_att[idx] = ((q * k).sum(-1) *
                                    self.relation_pri[relation_type] /
                                    self.sqrt_dk).to(res_att.dtype)
                    res_msg[idx] = torch.einsum(
                        'ehd,hdf->ehf', v, self.relation_msg[relation_type]
                    ).to(res_msg.dtype)
        self._att = softmax(res_att, edge_index_i, num_nodes=size_i)
        weight = self._att if edge_weight is None else \
            self._att * edge_weight.unsqueeze(-1)
        return (res_msg * weight.unsqueeze(-1)).view(-1, self.out_dim)

    def update(self, aggr_out: Tensor, node_inp: Tensor,
               node_type: Tensor) -> Tensor:
        res = aggr_out.new_zeros(aggr_out.size(0), self.out_dim)
        for target_type in range(self.num_node_types):
            idx = node_type == target_type
            if bool(idx.any()):
                res[idx] = self.update_as_type(aggr_out[idx],
                                               node_inp[idx],
                                               target_type).to(res.dtype)
        return res
