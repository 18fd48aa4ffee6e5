from torch_geometric_hgt.conv.base import SparseHGTConv


class VectorizedHGTConv(SparseHGTConv):
    r"""HGT (the semantics of :class:`LoopHGTConv`) with no Python loop:
    K, Q, V by one GEMM against all type weights and a gather, and the
    ``'vectorized'`` backend of
    :func:`~torch_geometric_hgt.functional.hgt_attention`. Memory
    :math:`O(E F + N R F)`; no host sync, so it traces under
    ``torch.compile(fullgraph=True, dynamic=True)``.

    Args: as :class:`~torch_geometric_hgt.params.HGTParameters`.

    Shapes: as :class:`LoopHGTConv`.
    """
    backend = 'vectorized'
