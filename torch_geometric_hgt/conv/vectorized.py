from torch_geometric_hgt.conv.base import SparseHGTConv


class VectorizedHGTConv(SparseHGTConv):
    r"""HGT (the semantics of :class:`LoopHGTConv`) without any Python loop
    over types, relations, nodes or edges.

    Linear maps run per node: :math:`K, Q, V` by one GEMM against all type
    weights followed by a gather; the edge phase is the ``'vectorized'``
    backend of :func:`~torch_geometric_hgt.functional.hgt_attention`
    (per-edge gathers, the relation key transform folded onto the query
    per (node, relation), the message transform after aggregation).
    Memory is :math:`O(E F + N R F)`; no host sync, so it traces under
    ``torch.compile(fullgraph=True, dynamic=True)``.

    Args: as :class:`~torch_geometric_hgt.params.HGTParameters`.

    Shapes: as :class:`LoopHGTConv`.
    """
    backend = 'vectorized'
