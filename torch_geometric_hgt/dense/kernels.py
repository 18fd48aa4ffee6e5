"""The soft update of :mod:`~torch_geometric_hgt.dense.math` through the C
kernels of :mod:`torch_geometric_hgt.native` (CPU, float32 / float64)."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt import native
from torch_geometric_hgt.dense.math import Saved, Sizes, Weights
from torch_geometric_hgt.functional.update import dropout_scale


def update_operands(h: Tensor, x: Tensor, P: Tensor,
                    keep: Optional[Tensor], w: Weights, s: Sizes
                    ) -> native.Update:
    """The operands of the C kernels for ``h = gelu(agg)``: the output map
    without its bias (the kernels add it) and the rest of
    :func:`math.updated`."""
    T = s.num_node_types
    Y = torch.mm(h, w.out).view(h.size(0), T, s.out_dim)
    return native.update(Y, w.out_bias.view(T, s.out_dim), keep,
                         dropout_scale(s.dropout), x, w.keep_x, P, w.gamma,
                         w.beta)


def update_forward(agg: Tensor, x: Tensor, P: Tensor,
                   keep: Optional[Tensor], w: Weights, s: Sizes,
                   mean: Optional[Tensor], rstd: Optional[Tensor]
                   ) -> Tuple[Tensor, Optional[Tensor],
                              Optional[Tensor]]:
    """:func:`math.update_forward` through the C kernels (``mean, rstd`` are
    written into those if given)."""
    return native.update_forward(
        update_operands(F.gelu(agg), x, P, keep, w, s), s.eps, mean, rstd)


def update_backward(g: Tensor, agg: Tensor, x: Tensor, P: Tensor,
                    saved: Saved, w: Weights, s: Sizes,
                    need_dx: bool
                    ) -> Tuple[Tensor, Tensor, Tensor,
                               Optional[Tensor],
                               List[Optional[Tensor]]]:
    """:func:`math.update_backward` through the C kernels."""
    h = F.gelu(agg)
    u = update_operands(h, x, P, saved.keep, w, s)
    dx = None if u.x is None else torch.zeros_like(x)
    dY, dP, dgamma, dbias, dkeep_x, dbeta = native.update_backward(
        g, u, saved.mean, saved.rstd, dx)
    return (dY.flatten(1), h, dP, dx if need_dx else None,
            [dbias.flatten(), dkeep_x, dgamma, dbeta])


