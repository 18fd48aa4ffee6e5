"""The ``'function'`` backend of the dense core: the autograd Function of
:class:`~torch_geometric_hgt.DenseHGTConv`'s hand-written backward, and
the scheduling of its chunks: on CPU the chunks run on worker threads of
one intra-op thread each
(:func:`~torch_geometric_hgt.dense.planner.run_workers`). Autograd through
the plain forward would keep ~15 KB per node, and checkpointing
recomputes every GEMM of the forward."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.dense import steps as C
from torch_geometric_hgt.dense.steps import rows, x_grad_buffer
from torch_geometric_hgt.dense.planner import (chunk_slices,
                                                resolve_chunk_size,
                                                run_workers)
from torch_geometric_hgt.dense.math import (Saved, Sizes, Weights,
                                            transposed_weights)


def forward_chunks(x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                   mask: Optional[Tensor], w: Weights, s: Sizes, size: int,
                   into: Optional[Saved] = None) -> Tensor:
    """``chunk_forward`` (:mod:`~torch_geometric_hgt.dense.steps`) over
    chunks of ``size`` graphs on the workers of
    :func:`~torch_geometric_hgt.dense.planner.run_workers`, keeping what
    the backward needs ``into`` the buffers of ``state_buffers`` if
    given."""
    B, N = x.shape[:2]
    out = x.new_empty(B, N, s.out_dim)
    parts = chunk_slices(B, size)

    def work(chunks: List[Tuple[slice, Optional[Tensor]]]) -> None:
        for part, keep in chunks:
            out[part] = C.chunk_forward(
                x[part], P[part], adj[part], E[part],
                None if mask is None else mask[part], w, s, keep,
                None if into is None else rows(into, part, N))[0]

    run_workers(list(zip(parts, C.dropout_masks(parts, N, s, x, into))),
                work, x.device)
    return out


class DenseLayerFunction(torch.autograd.Function):
    """All chunks of one layer; forward fills the buffers of
    ``state_buffers`` (:mod:`~torch_geometric_hgt.dense.steps`), backward
    walks the chunks once and then frees them."""
    @staticmethod
    def forward(ctx, s: Sizes, size: int, x: Tensor, P: Tensor, adj: Tensor,
                E: Tensor, mask: Optional[Tensor], *w: Optional[Tensor]
                ) -> Tensor:
        w = Weights(*w)
        B, N = x.shape[:2]
        ctx.state = C.state_buffers(B, N, x, s, w.gamma is not None)
        out = forward_chunks(x, P, adj, E, mask, w, s, size, ctx.state)
        ctx.s, ctx.size = s, size
        ctx.save_for_backward(x, P, adj, E, mask, *w)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        if ctx.state is None:
            raise RuntimeError(
                "DenseHGTConv's backward frees what it kept, so the graph "
                "cannot be differentiated a second time (retain_graph); "
                "build it with checkpoint=True for that")
        x, P, adj, E, mask, *w = ctx.saved_tensors
        w = Weights(*w)
        need = list(ctx.needs_input_grad[2:6])
        inputs = [x_grad_buffer(ctx.state, x) if need[0] else None,
                  *[torch.empty_like(t) if n else None
                    for t, n in zip((P, adj, E), need[1:])]]
        wt = transposed_weights(w, ctx.s.num_node_types)

        def work(parts: List[slice]) -> List[Optional[Tensor]]:
            dw = [None if t is None else torch.zeros_like(t) for t in w]
            for part in parts:
                got, got_w = C.chunk_backward(
                    grad[part], x[part], P[part], adj[part], E[part],
                    None if mask is None else mask[part], w, ctx.s,
                    rows(ctx.state, part, x.size(1)), need, wt)
                for buf, gi in zip(inputs, got):
                    if buf is not None:
                        buf[part] = gi
                for acc, gi in zip(dw, got_w):
                    if acc is not None:
                        acc += gi
            return dw

        shares = run_workers(chunk_slices(x.size(0), ctx.size), work,
                             x.device)
        ctx.state = None
        dw = [None if t is None else sum(share[i] for share in shares)
              for i, t in enumerate(shares[0])]
        return (None, None, *inputs, None, *dw)


def dense_function(x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                   mask: Optional[Tensor], w: Weights, s: Sizes,
                   chunk_size) -> Tensor:
    """The dense layer over chunks of ``chunk_size`` graphs,
    differentiable through :class:`DenseLayerFunction` (see
    :func:`~torch_geometric_hgt.dense.core.dense_hgt`)."""
    size = resolve_chunk_size(chunk_size, x.size(0), x.device)
    # (the per-graph products view them flat, the C kernels read them so)
    P, adj, E = (t.to(x.dtype).contiguous() for t in (P, adj, E))
    if torch.is_grad_enabled() and any(
            t.requires_grad for t in (x, P, adj, E, *w) if t is not None):
        return DenseLayerFunction.apply(s, size, x, P, adj, E, mask, *w)
    with torch.no_grad():
        return forward_chunks(x, P, adj, E, mask, w, s, size)
