from torch_geometric_hgt.buffers import BufferPool
from torch_geometric_hgt.conv.base import SparseHGTConv
from torch_geometric_hgt.functional.dispatch import (ChunkSize,
                                                     check_chunk_size)
from torch_geometric_hgt.validation import renamed_arguments


class UltraFastHGTConv(SparseHGTConv):
    r"""The fastest exact HGT layer (the semantics of :class:`LoopHGTConv`).

    Per node: K, Q, V and output maps as one GEMM per node type on
    type-sorted nodes (typed FLOPs only). Per (target, relation) pair:
    the relation key transform folded onto the query,
    :math:`\frac{\mu_{rh}}{\sqrt d} Q_h(t) \cdot (K_h(s) A_{rh}) =
    \tilde q_{t,r,h} \cdot K_h(s)`, and the message transform applied after
    aggregation, :math:`\sum_e \alpha_e V(s_e) M_r = (\sum_e \alpha_e
    V(s_e)) M_r`. Per edge, only gathers, dot products and scatters, in one
    operator with a hand-written backward over edges sorted by target
    (float32 softmax), processed in cache-sized chunks so that no
    ``[E, F]`` temporary is ever materialised. Pairs are compacted to
    those that occur when ``N R > E``, so tens of relations cost no
    ``N x R`` memory. Works under ``torch.compile(fullgraph=True,
    dynamic=True)`` (the edge operator is a ``torch.library`` custom op)
    and autocast.

    This is the ``'ultrafast'`` backend of
    :func:`~torch_geometric_hgt.functional.hgt_attention`. On CPU in
    float32/float64 (eager, no autocast, no RTE) the whole layer runs as
    one Function with a hand-written backward
    (:mod:`~torch_geometric_hgt.functional.backends.pooled_layer`) whose large
    intermediates and gradients live in :attr:`pool`, a
    :class:`~torch_geometric_hgt.buffers.BufferPool` the layer keeps
    between calls: after the first call only the output (and the input's
    gradient) are fresh memory, which at default process settings makes it
    1.5-3x faster (``benchmarks/RESULTS.md``). The price is that memory
    (about the layer's peak working set; with inputs of changing size,
    such as mini-batches, at most ``pool.max_buffers`` buffers) stays
    allocated while the layer lives; ``layer.pool.clear()`` returns it
    (moving the layer with ``.to()`` does too), and ``layer.pool = None``
    runs the layer through the autograd path instead.

    Args:
        as :class:`~torch_geometric_hgt.params.HGTParameters`, and
        chunk_size (int, str or None, optional): Edges per chunk of the
            edge operator (speed tuning only; any value gives the same
            result). :obj:`"auto"` picks it by the input's device:
            :obj:`32768` on CPU (cache-sized), :obj:`262144` on CUDA (fewer
            launches); :obj:`None` runs all edges as one chunk.
            (default: :obj:`"auto"`)

    Shapes: as :class:`LoopHGTConv`.
    """
    backend = 'ultrafast'
    repr_options = ('chunk_size', )

    @renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 max_len: int = 240, validate: bool = True,
                 chunk_size: ChunkSize = 'auto'):
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, use_RTE, max_len,
                         validate)
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        self.pool = BufferPool()

    def _apply(self, fn, recurse: bool = True):
        if self.pool is not None:  # buffers of the old device or dtype
            self.pool.clear()
        return super()._apply(fn, recurse)
