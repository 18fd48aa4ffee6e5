"""The users' original dense layer (``DifferentiableDenseHGTConv``), exactly,
vectorized; and the loop form it was written in, as the reference."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.dense.planner import checkpointed_chunks
from torch_geometric_hgt.functional.dispatch import check_chunk_size
from torch_geometric_hgt.params import HGTParameters

#: the original's threshold on a row's total raw attention
GATE = 1e-6


class _LegacyBase(HGTParameters):
    @V.renamed_arguments({'num_types': 'num_node_types'}, warn=False)
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 validate: bool = True):
        if use_RTE:
            raise ValueError("'use_RTE=True' is not supported: the original "
                             "DifferentiableDenseHGTConv never implemented "
                             "temporal encoding")
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, False, validate=validate)

    def reset_parameters(self):
        super().reset_parameters()
        # the original initialised its relation matrices like this
        torch.nn.init.xavier_uniform_(self.relation_att)
        torch.nn.init.xavier_uniform_(self.relation_msg)

    def check_dense(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                    edge_time: Optional[Tensor]):
        if edge_time is not None:
            raise ValueError("'edge_time' is not supported (use_RTE=False)")
        self.check_soft(x, P, adj, E, names=(
            'node_types_soft', 'adj_matrix_soft', 'edge_types_soft',
            'node_features'))


class DifferentiableDenseHGTConv(_LegacyBase):
    r"""The users' original dense soft-graph layer, output for output, with
    no loop over graphs, types or relations. Its attention is **not** HGT's
    (see ``docs/semantics.md``): for target :math:`i`, source :math:`j`
    (``adj[b, i, j]``: row = target), head :math:`h`,

    .. math::
        a_{ijh} = \mathrm{adj}_{ij} \sum_r E_{ij}(r) \frac{\mu_{rh}}{\sqrt d}
        \sum_s P_j(s)\, \bar q_{ih} \cdot (k_s(j)_h A_{rh}),
        \quad \bar q_i = \textstyle\sum_t P_i(t) q_t(i)

    .. math::
        m_{ijh} = \mathrm{adj}_{ij} \sum_r E_{ij}(r) \frac{\mu_{rh}}{\sqrt d}
        \sum_s P_j(s) \big(\bar q_{ih} \cdot k_s(j)_h A_{rh}\big)
        \, v_s(j)_h M_{rh}

    :math:`w_{i\cdot h} = \mathrm{softmax}_j(a_{i\cdot h})` over **all**
    :math:`j` if :math:`\sum_{jh} a_{ijh} > 10^{-6}`, else 0;
    :math:`\mathrm{agg}_i = \Vert_h \sum_j w_{ijh} m_{ijh}`, and
    :math:`\mathrm{out}_i = \sum_t P_i(t)\,\mathrm{Norm}_t(\sigma(s_t)
    \mathrm{drop}(W^a_t \mathrm{gelu}(\mathrm{agg}_i)) + (1-\sigma(s_t)) x_i)`
    (the gate only when ``in_dim == out_dim``; the original needed equal
    sizes). Cost :math:`O(B N^2 T R H d)`.

    Args:
        in_dim, out_dim, num_node_types, num_relations, n_heads, dropout,
        use_norm: as :class:`~torch_geometric_hgt.params.HGTParameters`.
        use_RTE (bool, optional): Must be :obj:`False` (the original has no
            temporal encoding). (default: :obj:`False`)
        chunk_size (int, str or None, optional): Graphs per chunk; chunks
            after the first are recomputed in backward (gradient
            checkpointing). ``'auto'`` picks 256 on CPU, 4096 on CUDA,
            ``None`` one chunk. (default: :obj:`'auto'`)
        validate (bool, optional): Check inputs. (default: :obj:`True`)

    Shapes:
        - **input:** ``node_features [B, N, in_dim]``,
          ``node_types_soft [B, N, T]``, ``adj_matrix_soft [B, N, N]``,
          ``edge_types_soft [B, N, N, R]``
        - **output:** ``[B, N, out_dim]``
    """
    repr_options = ('chunk_size', )

    @V.renamed_arguments({'num_types': 'num_node_types'}, warn=False)
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 chunk_size: Union[int, str, None] = 'auto',
                 validate: bool = True):
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, use_RTE, validate)
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size

    def forward(self, node_features: Tensor, node_types_soft: Tensor,
                adj_matrix_soft: Tensor, edge_types_soft: Tensor,
                edge_time: Optional[Tensor] = None) -> Tensor:
        self.check_dense(node_features, node_types_soft, adj_matrix_soft,
                         edge_types_soft, edge_time)
        return checkpointed_chunks(
            self._forward, (node_features, node_types_soft, adj_matrix_soft,
                            edge_types_soft), self.chunk_size,
            self.parameters())

    def _forward(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor
                 ) -> Tensor:
        B, N, _ = x.shape
        T, R, H, d = self.num_node_types, self.num_relations, self.n_heads, \
            self.d_k
        w, b = self.kqv_weight()
        kqv = F.linear(x, w.reshape(T * 3 * H * d, -1), b.reshape(-1))
        k, q, v = kqv.view(B, N, T, 3, H, d).unbind(3)  # [B, N, T, H, d]
        P = P.to(kqv.dtype)
        q_bar = torch.einsum('bnt,bnthd->bnhd', P, q)
        k_bar = torch.einsum('bnt,bnthd->bnhd', P, k)
        scale = (self.relation_pri / self.sqrt_dk).t().view(1, H, 1, R, 1)
        # (q_bar A^T) per relation, scaled by mu / sqrt(d)
        qa = torch.einsum('bihf,rhdf->bhird', q_bar, self.relation_att) * \
            scale
        # c(i, j, r) = adj * E(r); the sum over s folds into k_bar
        c = (adj.unsqueeze(-1) * E).to(qa.dtype).permute(0, 1, 3, 2)
        c = c.unsqueeze(1)  # [B, 1, i, r, j]
        att = (torch.einsum('bhird,bjhd->bhirj', qa, k_bar) * c).sum(3)
        gate = att.float().sum(dim=(1, 3)) > GATE  # [B, i]
        wgt = torch.softmax(att.float(), dim=-1).to(att.dtype)
        wgt = wgt * gate.view(B, 1, N, 1).to(att.dtype)
        # messages are weighted by the per-source-type raw score, so here s
        # stays resolved: sum_{j, s} w c P_j(s) score_s v_s(j), one GEMM
        score_s = torch.einsum('bhird,bjshd->bhirjs', qa, k)
        coef = score_s * (c * wgt.unsqueeze(3)).unsqueeze(-1)
        u = torch.einsum('bhirjs,bjshd->birhd', coef,
                         v * P.view(B, N, T, 1, 1))
        agg = torch.einsum('birhd,rhdf->bihf', u,
                           self.relation_msg).reshape(B, N, H * d)
        return self.update_soft(agg, x, P)


class LoopDifferentiableDenseHGTConv(_LegacyBase):
    r"""The original layer's loop form, written from the spec: per graph,
    per (target type, source type, relation) with the original's skipping
    of combinations whose mask sums below :math:`10^{-6}`; per-pair
    tensors ``[N, N, H, d]``. The reference for tests and the benchmark's
    "original". Same arguments and shapes as
    :class:`DifferentiableDenseHGTConv` (no ``chunk_size``).
    """
    def forward(self, node_features: Tensor, node_types_soft: Tensor,
                adj_matrix_soft: Tensor, edge_types_soft: Tensor,
                edge_time: Optional[Tensor] = None) -> Tensor:
        self.check_dense(node_features, node_types_soft, adj_matrix_soft,
                         edge_types_soft, edge_time)
        return torch.stack([
            self._one(*args) for args in zip(
                node_features, node_types_soft, adj_matrix_soft,
                edge_types_soft)
        ])

    def _one(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor) -> Tensor:
        N, H, d = x.size(0), self.n_heads, self.d_k
        res_att = x.new_zeros(N, N, H)
        res_msg = x.new_zeros(N, N, H, d)
        for t in range(self.num_node_types):
            if float(P[:, t].detach().sum()) < GATE:
                continue
            q = self.q_linears[t](x).view(N, H, d)
            for s in range(self.num_node_types):
                if float(P[:, s].detach().sum()) < GATE:
                    continue
                k = self.k_linears[s](x).view(N, H, d)
                v = self.v_linears[s](x).view(N, H, d)
                for r in range(self.num_relations):
                    c = P[:, t, None] * P[None, :, s] * E[:, :, r] * adj
                    if float(c.detach().sum()) < GATE:
                        continue
                    ka = torch.einsum('jhd,hdf->jhf', k,
                                      self.relation_att[r])
                    a = (q.unsqueeze(1) * ka.unsqueeze(0)).sum(-1)
                    a = a * c.unsqueeze(-1) * self.relation_pri[r] / \
                        self.sqrt_dk
                    vm = torch.einsum('jhd,hdf->jhf', v, self.relation_msg[r])
                    res_att = res_att + a
                    res_msg = res_msg + a.unsqueeze(-1) * vm.unsqueeze(0)
        agg = x.new_zeros(N, H, d)
        for i in range(N):
            if float(res_att[i].detach().sum()) > GATE:
                w = torch.softmax(res_att[i], dim=0)  # over all j
                agg[i] = (w.unsqueeze(-1) * res_msg[i]).sum(0)
        agg = agg.view(N, H * d)
        out = x.new_zeros(N, self.out_dim)
        for t in range(self.num_node_types):
            if float(P[:, t].detach().sum()) >= GATE:
                out = out + P[:, t:t + 1] * self.update_as_type(agg, x, t)
        return out
