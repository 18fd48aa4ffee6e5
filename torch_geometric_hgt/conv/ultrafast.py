from torch_geometric_hgt.buffers import BufferPool, PoolOwner
from torch_geometric_hgt.conv.base import SparseHGTConv
from torch_geometric_hgt.functional.dispatch import (ChunkSize,
                                                     check_chunk_size)
from torch_geometric_hgt.validation import renamed_arguments


class UltraFastHGTConv(PoolOwner, SparseHGTConv):
    r"""The fastest exact HGT layer (the semantics of :class:`LoopHGTConv`):
    the ``'ultrafast'`` backend of
    :func:`~torch_geometric_hgt.functional.hgt_attention`.

    K, Q, V and output maps run as one GEMM per node type on type-sorted
    nodes. The relation key transform is folded onto the query per
    (target, relation) pair, :math:`\frac{\mu_{rh}}{\sqrt d} Q_h(t) \cdot
    (K_h(s) A_{rh}) = \tilde q_{t,r,h} \cdot K_h(s)`, and the message
    transform applied after aggregation, :math:`\sum_e \alpha_e V(s_e) M_r
    = (\sum_e \alpha_e V(s_e)) M_r`; per edge only gathers, dot products
    and sums, over cache-sized chunks, so no ``[E, F]`` tensor exists;
    pair rows are compacted to those that occur when ``N R > E``, so tens
    of relations cost no ``N x R`` memory. Works under
    ``torch.compile(fullgraph=True, dynamic=True)`` and autocast.

    On CPU in float32/float64 (eager, no autocast, no RTE) the whole layer
    is one Function with a hand-written backward whose large tensors live
    in :attr:`pool`, a :class:`~torch_geometric_hgt.buffers.BufferPool`
    kept between calls: 1.5-3x faster at default process settings
    (``benchmarks/RESULTS.md``), at the price of about the peak working
    set staying allocated (for inputs of changing size at most
    ``pool.max_buffers`` buffers; ``pool.clear()`` or ``.to()`` frees it;
    ``layer.pool = None`` runs the autograd path instead).

    Args:
        as :class:`~torch_geometric_hgt.params.HGTParameters`, and
        chunk_size (int, str or None, optional): Edges per chunk (speed
            only). :obj:`"auto"`: :obj:`32768` on CPU, :obj:`262144` on
            CUDA; :obj:`None`: one chunk. (default: :obj:`"auto"`)

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
