from torch_geometric_hgt.conv.base import SparseHGTConv
from torch_geometric_hgt.functional.dispatch import (ChunkSize,
                                                     check_chunk_size)
from torch_geometric_hgt.validation import renamed_arguments


class MemoryEfficientHGTConv(SparseHGTConv):
    r"""Exact HGT (the semantics of :class:`LoopHGTConv`) whose memory
    above the inputs is node-level plus one chunk, never edge-level
    features.

    Nodes are sorted by type and edges by (target, relation), and the layer
    runs over chunks of whole targets holding about ``chunk_size`` edges:
    per chunk, the targets' queries folded with the relation key
    transforms, :math:`\tilde q = \frac{\mu}{\sqrt d} Q A^\top`, the
    scores against K, the float32 softmax (complete inside the chunk),
    :math:`\sum_e \alpha_e V_e` per (target, relation) pair, the message
    transform :math:`M_r`, and the update. Autograd keeps only the inputs
    and the ``[E, H]`` attention weights. Backward replays one chunk at a
    time (same RNG and autocast state) in two passes, the updates and the
    value side with V, then the queries and the key side with K (each
    recomputed by one GEMM per type), so peak memory is one of K, V, its
    gradient, the input gradient, ``[E, H]`` score gradients and one
    chunk's temporaries. ``checkpoint=True`` keeps only the inputs: the
    attention weights are recomputed too (one more pass over the chunks),
    which helps deep stacks, not the single-layer peak.

    This is the ``'memory_efficient'`` backend of
    :func:`~torch_geometric_hgt.functional.hgt_attention` with the
    projections and the update inside the chunks. Under ``torch.compile``
    (which cannot trace the host-side chunk plan) the layer runs that
    backend's edge phase, one custom op over the same chunks, between
    ordinary projections and update: edge memory stays bounded,
    node-level tensors are kept by autograd.

    Args:
        as :class:`~torch_geometric_hgt.params.HGTParameters`, and
        chunk_size (int, str or None, optional): Edges per chunk (and at
            most this many targets); any value gives the same result.
            Smaller saves memory, larger saves time. :obj:`None` runs one
            chunk; :obj:`"auto"` picks it by the input's device:
            :obj:`16384` on CPU, :obj:`262144` on CUDA (where the launches
            per chunk, not its arithmetic, set the time: ~8x faster at 100k
            nodes / 1M edges on an H200, about twice the peak memory
            there). (default: :obj:`"auto"`)
        checkpoint (bool, optional): Keep only the inputs for backward
            (recompute the attention weights). (default: :obj:`False`)

    Shapes: as :class:`LoopHGTConv`.
    """
    backend = 'memory_efficient'
    repr_options = ('chunk_size', 'checkpoint')

    @renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 max_len: int = 240, validate: bool = True,
                 chunk_size: ChunkSize = 'auto',
                 checkpoint: bool = False):
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, use_RTE, max_len,
                         validate)
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        self.checkpoint = checkpoint
