"""Small tensor kernels shared by the backends."""
from typing import Callable, Optional

import torch
from torch import Tensor

try:  # optional accelerator
    import torch_scatter  # noqa: F401
    HAS_TORCH_SCATTER = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_TORCH_SCATTER = False


def typed_linear(x: Tensor, node_type: Tensor, weight: Tensor,
                 bias: Tensor) -> Tensor:
    """``weight[node_type[n]] @ x[n] + bias[node_type[n]]`` for every row.

    One GEMM against all ``T`` weights (``weight [T, out, in]``) followed by a
    gather: ``T`` times the FLOPs of the typed product, but no host sync and
    no Python loop, so it traces under ``torch.compile``.
    """
    T, out_dim, _ = weight.shape
    y = torch.nn.functional.linear(x, weight.reshape(T * out_dim, -1),
                                   bias.reshape(-1))
    idx = node_type.view(-1, 1, 1).expand(-1, 1, out_dim)
    return y.view(-1, T, out_dim).gather(1, idx).squeeze(1)


def group_apply(x: Tensor, group: Tensor, num_groups: int,
                fn: Callable[[Tensor, int], Tensor]) -> Tensor:
    """``out[i] = fn(x[group == g], g)[...]`` row by row: rows sorted by
    group once, ``fn`` called once per non-empty group. One host sync (the
    group sizes); eager only."""
    perm = torch.argsort(group, stable=True)
    sizes = torch.bincount(group, minlength=num_groups).tolist()
    parts = x.index_select(0, perm).split(sizes)
    y = torch.cat([fn(part, g) for g, part in enumerate(parts)
                   if part.size(0) > 0], 0)
    return torch.empty_like(y).index_copy_(0, perm, y)


def typed_linear_grouped(x: Tensor, node_type: Tensor, weight: Tensor,
                         bias: Tensor) -> Tensor:
    """Same as :func:`typed_linear` with one GEMM per type on type-sorted
    rows: the typed FLOPs only, at the price of one host sync (group sizes).
    Falls back to :func:`typed_linear` while tracing."""
    if torch.compiler.is_compiling() or x.size(0) == 0:
        return typed_linear(x, node_type, weight, bias)
    return group_apply(
        x, node_type, weight.size(0),
        lambda xt, t: torch.nn.functional.linear(xt, weight[t], bias[t]))


def relation_matmul(x: Tensor, rel: Tensor, weight: Tensor) -> Tensor:
    """``x[p, h] @ weight[rel[p], h]`` for ``x [P, H, d]``, ``weight
    [R, H, d, e]``: one batched product per relation (eager only)."""
    if x.size(0) == 0:
        return x.new_zeros(0, weight.size(1), weight.size(3))
    return group_apply(
        x, rel, weight.size(0),
        lambda xr, r: torch.einsum('phd,hde->phe', xr, weight[r]))


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` into ``dim_size`` rows by ``index`` (dim 0)."""
    if HAS_TORCH_SCATTER and not torch.compiler.is_compiling():
        return torch_scatter.scatter(src, index, dim=0, dim_size=dim_size,
                                     reduce='sum')
    out = src.new_zeros((dim_size, ) + src.shape[1:])
    return out.index_add_(0, index, src)


def segment_max(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Row-wise max of ``src [E, H]`` per ``index``; ``-inf`` where empty.
    No gradient (used only to stabilise the softmax)."""
    src = src.detach()
    out = src.new_full((dim_size, ) + src.shape[1:], float('-inf'))
    idx = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    return out.scatter_reduce_(0, idx, src, 'amax', include_self=True)


def segment_softmax(score: Tensor, index: Tensor, dim_size: int,
                    out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """Softmax of ``score [E, H]`` over the edges that share ``index``,
    accumulated in float32 whatever the input dtype."""
    s = score.float()
    m = segment_max(s, index, dim_size)
    e = torch.exp(s - m.index_select(0, index))
    den = scatter_sum(e, index, dim_size)
    alpha = e / den.index_select(0, index)
    return alpha.to(out_dtype or score.dtype)
