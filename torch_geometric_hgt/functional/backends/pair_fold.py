r"""The ``'ultrafast'`` backend: relation transforms folded onto (target,
relation) pair rows (:mod:`~torch_geometric_hgt.functional.plan`),
:math:`\tilde q_{(t, r)} = \tfrac{\mu_r}{\sqrt d} Q_t A_r^\top`,
:math:`\mathrm{agg}_t = \sum_r (\sum_{e \in (t, r)} \alpha_e V_{s_e})
M_r`, per edge only the edge operator's gathers and sums over
cache-sized chunks: no ``[E, F]`` tensor exists.
"""
from typing import Optional, Tuple

from torch import Tensor

from torch_geometric_hgt.functional.backends.edge_op import edge_attention
from torch_geometric_hgt.functional.plan import PairPlan


def pair_fold_attention(q: Tensor, k: Tensor, v: Tensor, plan: PairPlan,
                        w_q: Tensor, w_msg: Tensor, chunk: int,
                        rte: Optional[Tuple[Tensor, Tensor]] = None
                        ) -> Tuple[Tensor, Tensor]:
    """``(agg [N, H, d], alpha [E, H])`` from ``q``, ``k``, ``v [N, H,
    d]``, folded query weights ``w_q [R, H, d, d]`` and ``w_msg``, the
    plan, ``chunk`` edges per chunk and the optional temporal table
    ``(table [rows, 2 H d], row [E])``."""
    H, d = q.shape[1:]
    kt = vt = trow = None
    if rte is not None:
        kt, vt = (t.transpose(0, 1)
                  for t in rte[0].view(-1, 2, H, d).unbind(1))
        trow = rte[1].index_select(0, plan.perm)
    qr = plan.fold_queries(q.transpose(0, 1), w_q)
    u, alpha = edge_attention(qr, k.transpose(0, 1), v.transpose(0, 1),
                              plan.src, plan.dst, plan.pair, plan.num_nodes,
                              chunk, kt, vt, trow)
    return (plan.sum_messages(u, w_msg).transpose(0, 1),
            plan.unsort(alpha.detach()))
