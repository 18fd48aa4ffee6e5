from typing import Optional

import torch
from torch import Tensor

from torch_geometric_hgt.dense.conv import DenseHGTConv
from torch_geometric_hgt.dense.math import edge_weights


class LoopDenseHGTConv(DenseHGTConv):
    r"""The plain reference of :class:`DenseHGTConv`, in the shape of the
    users' original code: a loop over graphs and over (target type, source
    type, relation) combinations, each adding its probability-weighted
    score and message. Slow; for tests and as the benchmark's "original".
    Same arguments and shapes as :class:`DenseHGTConv` (``chunk_size`` is
    ignored).
    """
    def forward(self, x: Tensor, node_types: Tensor, adj: Tensor,
                edge_types: Tensor, node_mask: Optional[Tensor] = None
                ) -> Tensor:
        self.check_soft(x, node_types, adj, edge_types, node_mask)
        if node_mask is None:
            node_mask = torch.ones(x.shape[:2], dtype=torch.bool,
                                   device=x.device)
        return torch.stack([
            self._one(*args) for args in zip(x, node_types, adj, edge_types,
                                              node_mask)
        ])

    def _one(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
             mask: Tensor) -> Tensor:
        N, H, d = x.size(0), self.n_heads, self.d_k
        m = mask.to(x.dtype)
        adj = edge_weights(adj, mask)  # [j (source), i]
        score = x.new_zeros(N, N, H)  # [j, i, h]
        msg = x.new_zeros(N, N, H, d)
        for s in range(self.num_node_types):
            k = self.k_linears[s](x).view(N, H, d)
            v = self.v_linears[s](x).view(N, H, d)
            for r in range(self.num_relations):
                w_msg = P[:, s, None] * E[:, :, r]
                vm = torch.einsum('jhd,hdf->jhf', v, self.relation_msg[r])
                msg = msg + w_msg[..., None, None] * vm.unsqueeze(1)
                ka = torch.einsum('jhd,hdf->jhf', k, self.relation_att[r])
                for t in range(self.num_node_types):
                    q = self.q_linears[t](x).view(N, H, d)
                    c = P[:, s, None] * P[None, :, t] * E[:, :, r]
                    sc = (ka.unsqueeze(1) * q.unsqueeze(0)).sum(-1)
                    score = score + c.unsqueeze(-1) * sc * \
                        self.relation_pri[r] / self.sqrt_dk
        agg = x.new_zeros(N, H, d)
        for i in range(N):
            a = adj[:, i]
            if float(a.detach().sum()) > 0:  # else no message, no gradient
                src = mask  # adj = 0 sources add 0 but have a gradient
                sc = score[src, i]
                e = a[src, None] * torch.exp(sc - sc.max(0).values)
                alpha = e / e.sum(0)
                agg[i] = (alpha.unsqueeze(-1) * msg[src, i]).sum(0)
        agg = agg.view(N, H * d)
        out = sum(P[:, t:t + 1] * self.update_as_type(agg, x, t)
                  for t in range(self.num_node_types))
        return out * m.unsqueeze(-1)
