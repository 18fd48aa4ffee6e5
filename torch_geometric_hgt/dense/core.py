"""The dense soft-graph HGT (``docs/semantics.md``) as one function over two
backends picked by :func:`~torch_geometric_hgt.functional.dispatch.
dense_backend`: ``'function'`` (hand-written, optional C kernels,
:mod:`~torch_geometric_hgt.dense.function`) and ``'autograd'``
(:mod:`~torch_geometric_hgt.dense.autograd`), over chunks of graphs from
:mod:`~torch_geometric_hgt.dense.planner`."""
from typing import Optional

from torch import Tensor

from torch_geometric_hgt.dense.autograd import dense_autograd
from torch_geometric_hgt.dense.function import dense_function
from torch_geometric_hgt.dense.math import Sizes, Weights
from torch_geometric_hgt.dense.planner import checkpointed_chunks
from torch_geometric_hgt.functional.dispatch import dense_backend


def dense_hgt(x: Tensor, P: Tensor, adj: Tensor, E: Tensor, w: Weights,
              s: Sizes, node_mask: Optional[Tensor] = None, *,
              backend: str = 'auto', chunk_size='auto') -> Tensor:
    """The dense layer with weights ``w`` and sizes ``s``
    (:func:`~torch_geometric_hgt.dense.math.layer_weights`,
    :func:`~torch_geometric_hgt.dense.math.layer_sizes`; dropout is
    ``s.dropout``, 0 in eval mode).

    Args:
        x (Tensor): Node features ``[B, N, in_dim]``.
        P (Tensor): Node type probabilities ``[B, N, T]``.
        adj (Tensor): Soft adjacency ``[B, N, N]`` (``adj[b, j, i]``: edge
            ``j -> i``).
        E (Tensor): Relation probabilities ``[B, N, N, R]``.
        w (Weights), s (Sizes): The layer's weights and sizes.
        node_mask (Tensor, optional): Real nodes ``[B, N]``; padding gets
            no edges and a zero output. (default: :obj:`None`)
        backend (str, optional): ``'function'``, ``'autograd'`` or
            ``'auto'``. (default: :obj:`"auto"`)
        chunk_size (int, str or None, optional): Graphs per chunk;
            ``'auto'`` the device's default, :obj:`None` one chunk.
            (default: :obj:`"auto"`)

    Returns:
        ``[B, N, out_dim]``.
    """
    if backend == 'auto':
        backend = dense_backend(x, w.kqv.dtype)
    if backend == 'function':
        return dense_function(x, P, adj, E, node_mask, w, s, chunk_size)
    return checkpointed_chunks(
        lambda *t: dense_autograd(*t, w, s), (x, P, adj, E, node_mask),
        chunk_size, checkpoint=False)
