"""Small tensor kernels shared by the backends."""
import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt.numerics import EXP_CAP

try:  # optional accelerator
    import torch_scatter  # noqa: F401
    HAS_TORCH_SCATTER = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_TORCH_SCATTER = False


def accumulation_dtype(t: Tensor) -> torch.dtype:
    """Where sums and softmax run: float32 for half types, else ``t``'s
    dtype."""
    return torch.promote_types(t.dtype, torch.float32)


def chunk_ranges(n: int, chunk: int) -> List[Tuple[int, int]]:
    """``[start, end)`` of consecutive chunks of ``chunk`` items out of
    ``n``."""
    chunk = max(int(chunk), 1)
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


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


def type_order(node_type: Tensor, num_node_types: int
               ) -> Tuple[Tensor, Tensor, List[int]]:
    """``(perm, rank, sizes)``: ``node_type[perm]`` is sorted (stable),
    ``rank`` inverts ``perm`` and ``sizes`` counts each type. One host sync
    (the sizes); eager only."""
    perm = torch.argsort(node_type, stable=True)
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(perm.numel(), device=perm.device)
    return perm, rank, torch.bincount(node_type,
                                      minlength=num_node_types).tolist()


class _SortedTypedLinear(torch.autograd.Function):
    """Each type's rows are one contiguous slice: one GEMM per type written
    straight into the output (no gather, concatenation or scatter), and
    likewise in backward."""
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor,
                sizes: List[int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.sizes = sizes
        y = x.new_empty(x.size(0), weight.size(1))
        for t, (xt, yt) in enumerate(zip(x.split(sizes), y.split(sizes))):
            if xt.size(0):
                torch.addmm(bias[t], xt, weight[t].t(), out=yt)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        dw = torch.zeros_like(weight)
        db = weight.new_zeros(weight.shape[:2])
        for t, (xt, dyt, dxt) in enumerate(zip(x.split(ctx.sizes),
                                               dy.split(ctx.sizes),
                                               dx.split(ctx.sizes))):
            if xt.size(0) == 0:
                continue
            if ctx.needs_input_grad[0]:
                torch.mm(dyt, weight[t], out=dxt)
            dw[t] = dyt.t() @ xt
            db[t] = dyt.sum(0)
        return dx if ctx.needs_input_grad[0] else None, dw, db, None


def typed_linear_sorted(x: Tensor, sizes: List[int], weight: Tensor,
                        bias: Tensor) -> Tensor:
    """:func:`typed_linear` for rows sorted by type, ``sizes[t]`` rows of
    type ``t``: the typed FLOPs only (eager only)."""
    dtype = torch.get_autocast_dtype(x.device.type) \
        if torch.is_autocast_enabled(x.device.type) else x.dtype
    with torch.autocast(x.device.type, enabled=False):
        return _SortedTypedLinear.apply(x.to(dtype), weight.to(dtype),
                                        bias.to(dtype), sizes)


class _ConcatLinear(torch.autograd.Function):
    """``cat([x_t @ w_t^T + b_t])`` with each product written straight into
    its rows of one output (no concatenation copy), and likewise in
    backward."""
    @staticmethod
    def forward(ctx, num: int, *args: Tensor) -> Tensor:
        xs, ws, bs = args[:num], args[num:2 * num], args[2 * num:]
        ctx.save_for_backward(*xs, *ws)
        ctx.num = num
        y = xs[0].new_empty(sum(x.size(0) for x in xs), ws[0].size(0))
        for x, w, b, out in zip(xs, ws, bs,
                                y.split([x.size(0) for x in xs])):
            if x.size(0):
                torch.addmm(b, x, w.t(), out=out)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        saved, num = ctx.saved_tensors, ctx.num
        xs, ws = saved[:num], saved[num:]
        dys = dy.contiguous().split([x.size(0) for x in xs])
        dxs = [dyt @ w if ctx.needs_input_grad[1 + t] else None
               for t, (dyt, w) in enumerate(zip(dys, ws))]
        dws = [dyt.t() @ x for dyt, x in zip(dys, xs)]
        dbs = [dyt.sum(0) for dyt in dys]
        return (None, *dxs, *dws, *dbs)


def concat_linear(xs: List[Tensor], weights: List[Tensor],
                  biases: List[Tensor]) -> Tensor:
    """``torch.cat([F.linear(x, w, b) for ...])`` for row blocks with their
    own weights (input sizes may differ), without the concatenation copy;
    autocast's dtype applies as to ``F.linear`` (eager only)."""
    device = xs[0].device.type
    dtype = torch.get_autocast_dtype(device) \
        if torch.is_autocast_enabled(device) else xs[0].dtype
    with torch.autocast(device, enabled=False):
        return _ConcatLinear.apply(len(xs), *(t.to(dtype) for t in (
            *xs, *weights, *biases)))


def query_fold(relation_att: Tensor, relation_pri: Tensor) -> Tensor:
    """``mu[r, h] / sqrt(d) A[r, h]^T``, ``[R, H, d, d]``: the relation key
    transform and prior moved onto the query side, so that
    ``(q @ W[r, h]) . k`` is the score of ``k`` under relation ``r``."""
    R, H, d, _ = relation_att.shape
    scale = (relation_pri / math.sqrt(d)).view(R, H, 1, 1)
    return (relation_att * scale).transpose(-1, -2)


def relations_by_column(w: Tensor) -> Tensor:
    """``[R, H, d, e]`` -> per head ``[H, d, R e]`` (column ``r e + j``):
    one product with it applies every relation's ``w[r, h]``."""
    R, H, d, e = w.shape
    return w.permute(1, 2, 0, 3).reshape(H, d, R * e)


def relations_by_row(w: Tensor) -> Tensor:
    """``[R, H, d, e]`` -> per head ``[H, R d, e]`` (row ``r d + i``):
    one product with it sums every relation's ``x[r] @ w[r, h]``."""
    R, H, d, e = w.shape
    return w.transpose(0, 1).reshape(H, R * d, e)


def fold_relations_by_head(x: Tensor, w: Tensor) -> Tensor:
    """``x[n, h] @ w[r, h]`` for every relation, in head-major rows: ``x
    [N, H, d]``, ``w [R, H, d, e]`` -> ``[H, N R, e]`` (row ``n R + r``),
    one batched GEMM with no output permutation."""
    H, e = x.size(1), w.size(3)
    w = relations_by_column(w.to(x.dtype))
    return torch.bmm(x.transpose(0, 1), w).view(H, -1, e)


def sum_relations_by_head(u: Tensor, w: Tensor) -> Tensor:
    """``sum_r u[n, r, h] @ w[r, h]`` from head-major rows: ``u [H, N R,
    d]`` (row ``n R + r``), ``w [R, H, d, e]`` -> ``[N, H, e]``."""
    R, H, d, _ = w.shape
    return torch.bmm(u.view(H, -1, R * d),
                     relations_by_row(w.to(u.dtype))).transpose(0, 1)


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


def segment_softmax(score: Tensor, index: Tensor, dim_size: int,
                    dim: int = 0,
                    out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """Softmax of ``score`` over the entries that share ``index`` along
    ``dim`` (the other dimensions are independent, e.g. heads), in
    :func:`accumulation_dtype`: the segment's max (a constant for the
    gradient) is subtracted before ``exp``. Every sparse backend's softmax
    over a target's in-edges is this one."""
    s = score.to(accumulation_dtype(score))
    shape = list(s.shape)
    shape[dim] = dim_size
    idx = index.view([-1 if i == dim else 1 for i in range(s.dim())])
    top = s.new_full(shape, float('-inf')).scatter_reduce_(
        dim, idx.expand_as(s), s.detach(), 'amax', include_self=True)
    alpha = torch.exp(s - top.index_select(dim, index))
    den = s.new_zeros(shape).index_add_(dim, index, alpha)
    return (alpha / den.index_select(dim, index)).to(out_dtype or
                                                     score.dtype)

def adjacency_softmax(score: Tensor, a: Tensor) -> Tensor:
    """Softmax weights of a soft graph's edges, before the edge weights:
    ``softmax_j`` of ``score [..., j, i]`` over the sources ``j`` with
    ``a > 0``, weighted by ``a``, i.e. ``alpha = a * result``. Targets
    without a positive ``a`` get 0 (and no gradient). The column max (a
    constant for the gradient) is subtracted and exponents are capped at
    :data:`EXP_CAP`. In place on fresh temporaries when ``score`` needs no
    gradient. Every dense backend's softmax is this one (the C kernel
    mirrors it)."""
    top = score.detach().masked_fill(a <= 0, float('-inf')).amax(
        -2, keepdim=True)
    top = top.masked_fill_(torch.isinf(top), 0.)
    if score.requires_grad or a.requires_grad:
        expo = torch.exp((score - top).clamp(max=EXP_CAP))
    else:
        expo = (score - top).clamp_(max=EXP_CAP).exp_()
    den = (a * expo).sum(-2, keepdim=True)
    return torch.where(den > 0, expo / den.clamp(min=1e-30),
                       torch.zeros_like(expo))


#: splitmix64's constants (as signed 64-bit integers for torch)
_GOLDEN, _MIX1, _MIX2 = (c - 2**64 for c in (
    0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shift_right(z: Tensor, k: int) -> Tensor:
    """Logical (unsigned) right shift of int64 ``z``."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def hashed_keep(n: int, seed: int, threshold: int,
                device: torch.device) -> Tensor:
    """``n`` keep flags from splitmix64 of ``seed`` and each pair's index:
    entry ``2i`` keeps where the hash's low 32 bits reach ``threshold``,
    ``2i + 1`` where its high 32 bits do. The same bits as the C kernels'
    ``dropout_mask`` (``csrc/soft_update.c``), on any device."""
    i = torch.arange((n + 1) // 2, dtype=torch.long, device=device)
    seed = seed - 2**64 if seed >= 2**63 else seed
    z = i * _GOLDEN + seed  # int64 arithmetic wraps, as uint64's does
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    z = z ^ _shift_right(z, 31)
    halves = torch.stack([z & 0xFFFFFFFF, _shift_right(z, 32)], 1)
    return (halves >= threshold).view(-1)[:n]


def dropout_keep(shape: Tuple[int, ...], p: float, device: torch.device,
                 out: Optional[Tensor] = None) -> Tensor:
    """A bool keep mask of ``shape``, ``True`` with probability ``1 - p``
    (to 2^-32), from a hash of a seed drawn from torch's default generator
    (so ``torch.manual_seed`` fixes it) and each entry's index: the same
    mask on every device and with or without the C kernels (which draw it
    several times faster on CPU)."""
    from torch_geometric_hgt import native
    seed = int(torch.randint(2**63 - 1, ()))
    threshold = min(round(p * 2**32), 2**32)
    if torch.device(device).type == 'cpu' and native.is_available() and \
            (out is None or out.is_contiguous()):
        return native.dropout_mask(shape, seed, threshold, out)
    keep = hashed_keep(math.prod(shape), seed, threshold,
                       torch.device(device)).view(shape)
    return keep if out is None else out.copy_(keep)


def dropout_scale(p: float) -> float:
    """What kept entries are multiplied by."""
    return 1 / (1 - p)


def dropout_factor(keep: Tensor, p: float, dtype: torch.dtype) -> Tensor:
    """The factor a :func:`dropout_keep` mask multiplies by (the scale in
    ``dtype``'s precision, as the C kernels of the dense layer use it)."""
    return keep.to(dtype) * dropout_scale(p)


# The typed update of every layer, given its parameter module ``p``
# (:class:`~torch_geometric_hgt.HGTParameters`): output map, dropout, skip
# gate and LayerNorm per node type. The hand-written forms that carry their
# own backward are tested against these: the dense ones (dense/math.py, the
# C kernels) against update_soft, conv/layer_function.py against
# update_hard (through the autograd path it replaces).

def gate_and_norm(p, y: Tensor, x: Tensor, node_type: Tensor,
                  skip: Tensor,
                  norm: Optional[Sequence[Tensor]]) -> Tensor:
    """Dropout, skip gate (only when ``in_dim == out_dim``) and
    LayerNorm of layer ``p``'s update ``y`` for hard types: each row takes its
    type's ``skip [T]`` logit and ``norm`` affine rows (``[T, out]``
    weight and bias, or ``None`` without norm)."""
    # index_select, not w[node_type]: the latter's backward accumulates
    # rows in threads on CPU, in an order that varies between runs
    y = p.drop(y)
    if p.in_dim == p.out_dim:
        alpha = torch.sigmoid(skip.index_select(0, node_type))[:, None]
        y = alpha * y + (1 - alpha) * x
    if norm is not None:
        weight, bias = (w.index_select(0, node_type) for w in norm)
        y = F.layer_norm(y, (p.out_dim, ), eps=p.norms[0].eps)
        y = y * weight + bias
    return y


def update_as_type(p, agg: Tensor, x: Tensor, t: int) -> Tensor:
    """The update with every row taken as node type ``t``, written
    plainly: the loop references' building block."""
    y = p.drop(p.a_linears[t](F.gelu(agg)))
    if p.in_dim == p.out_dim:
        alpha = torch.sigmoid(p.skip[t])
        y = alpha * y + (1 - alpha) * x
    if p.use_norm:
        y = p.norms[t](y)
    return y


def update_hard(p, x: Tensor, node_type: Tensor, a_out: Tensor) -> Tensor:
    """The update for hard node types, given
    ``a_out = W_a[type] gelu(agg) + b_a[type]`` per row."""
    return gate_and_norm(p, a_out, x, node_type, p.skip, p.norm_weight())


def soft_update_terms(h: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
                      keep_x: Optional[Tensor], keep: Optional[Tensor] = None,
                      p: float = 0.0) -> Tensor:
    """The gated update of every node type before the norm, ``[n, T,
    out]``: ``drop(h W_t + b_t) + (1 - g_t) x`` for rows ``h = gelu(agg)
    [n, out]`` and ``x [n, in]``, ``weight [out, T out]`` (gate folded in,
    see :meth:`~torch_geometric_hgt.HGTParameters.gated_a_weight`), ``bias
    [T out]``, ``keep_x [T]`` (``1 - g_t``; None without skip) and
    ``keep`` a :func:`dropout_keep` mask of probability ``p`` broadcasting
    to ``[n, T, out]`` (None: no dropout)."""
    D = weight.size(0)
    y = torch.addmm(bias, h, weight).view(h.size(0), bias.numel() // D, D)
    if keep is not None:
        y = y.mul_(dropout_factor(keep, p, y.dtype))
    if keep_x is not None:
        y = y.addcmul_(x.unsqueeze(1), keep_x.view(1, -1, 1).to(y.dtype))
    return y


def update_soft(p, agg: Tensor, x: Tensor, P: Tensor,
                dropout_per_type: bool = True) -> Tensor:
    """``sum_t P[..., t] * update_t(agg, x)`` for soft node types:
    ``agg [..., out_dim]``, ``x [..., in_dim]``, ``P [..., T]``. In
    training, dropout draws one mask per type (torch's dropout), or with
    ``dropout_per_type=False`` one :func:`dropout_keep` mask shared by all
    types (6x fewer random draws; for one-hot types the same
    distribution)."""
    w, b, keep_x = p.gated_a_weight()
    T, D, lead = w.size(0), p.out_dim, agg.shape[:-1]
    h = F.gelu(agg).reshape(-1, agg.size(-1))
    x = x.reshape(h.size(0), -1)
    weight, bias = w.flatten(0, 1).t(), b.flatten()
    if dropout_per_type:
        y = p.drop(soft_update_terms(h, x, weight, bias, None))
        if keep_x is not None:
            y = torch.addcmul(y, x.unsqueeze(1),
                              keep_x.view(1, -1, 1).to(y.dtype))
    else:
        keep = None
        if p.training and p.drop.p > 0:
            keep = dropout_keep((h.size(0), 1, D), p.drop.p, h.device)
        y = soft_update_terms(h, x, weight, bias, keep_x, keep, p.drop.p)
    norm = p.norm_weight()
    if norm is not None:
        y = torch.addcmul(norm[1], F.layer_norm(y, (D, ),
                                                eps=p.norms[0].eps),
                          norm[0])
    # a product and a sum, not einsum: that becomes one tiny matmul
    # per node, with a copy each
    P = P.reshape(-1, T, 1).to(y.dtype)
    return (y * P).sum(-2).view(*lead, D)
