from typing import Optional, Tuple, Union

from torch import Tensor
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from torch_geometric_hgt.conv.fused import fused_forward
from torch_geometric_hgt.conv.base import SparseHGTConv


class MemoryEfficientHGTConv(SparseHGTConv):
    r"""Exact HGT (the semantics of :class:`LoopHGTConv`) whose activation
    memory is bounded by the chunk size instead of the edge count.

    Edges are sorted by (target, relation) and the whole edge phase runs
    over chunks of ``chunk_size`` edges, in forward and again in its
    hand-written backward: the relation transforms per (target, relation)
    pair of the chunk (query side :math:`\frac{\mu}{\sqrt d} Q A^\top`,
    messages :math:`(\sum_e \alpha_e V_e) M_r` after aggregation), the
    scores, a two-pass float32 segment softmax over the stored ``[E, H]``
    scores, and the aggregation. No ``[E, F]`` tensor and no ``[N R, F]``
    pair tensor ever exists; autograd keeps node-level tensors and the
    ``[E, H]`` attention weights. ``checkpoint=True`` also recomputes the
    node-level part in backward, saving only the inputs.

    Args:
        as :class:`~torch_geometric_hgt.params.HGTParameters`, and
        chunk_size (int, optional): Edges per chunk; any value ``>= 1``
            gives the same result. (default: :obj:`65536`)
        checkpoint (bool, optional): Gradient checkpointing of the whole
            layer. (default: :obj:`False`)

    Shapes: as :class:`LoopHGTConv`.
    """
    def __init__(self, in_dim: int, out_dim: int, num_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 max_len: int = 240, validate: bool = True,
                 chunk_size: int = 65536, checkpoint: bool = False):
        super().__init__(in_dim, out_dim, num_types, num_relations, n_heads,
                         dropout, use_norm, use_RTE, max_len, validate)
        if chunk_size < 1:
            raise ValueError(f"'chunk_size' must be >= 1 (got {chunk_size})")
        self.chunk_size = chunk_size
        self.checkpoint = checkpoint

    def forward(self, x: Tensor, node_type: Tensor, edge_index: Tensor,
                edge_type: Tensor, edge_time: Optional[Tensor] = None,
                return_attention_weights: bool = False
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        self.check_sparse(x, node_type, edge_index, edge_type, edge_time)
        args = (self, x, node_type, edge_index, edge_type, edge_time,
                self.chunk_size, True)
        if self.checkpoint and self.training:
            out, att = grad_checkpoint(fused_forward, *args,
                                       use_reentrant=False)
        else:
            out, att = fused_forward(*args)
        return self._result(out, att, return_attention_weights)
