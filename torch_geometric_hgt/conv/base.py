from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MessagePassing

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.params import HGTParameters


# On an H200 the chunked layers' kernel launches, not their arithmetic, set
# the time at the CPU sizes (16-32k edges): 262144 made MemoryEfficient
# ~8x and UltraFast ~1.2x faster at 100k nodes / 1M edges
CUDA_CHUNK_SIZE = 262144


#: what ``chunk_size`` takes, in the sparse and the dense layers alike: a
#: positive int, ``'auto'`` (the device's default) or ``None`` (one chunk)
ChunkSize = Union[int, str, None]


def check_chunk_size(chunk_size: ChunkSize) -> None:
    if chunk_size is None or chunk_size == 'auto':
        return
    if not V.is_positive_int(chunk_size):
        raise ValueError(f"'chunk_size' must be an int >= 1, 'auto' or None "
                         f"(got {chunk_size!r})")


def edges_per_chunk(chunk_size: ChunkSize, device: torch.device,
                    cpu_default: int, num_edges: int) -> int:
    """``chunk_size``; for ``'auto'`` the device's default, for
    :obj:`None` all ``num_edges`` in one chunk."""
    if chunk_size is None:
        return max(num_edges, 1)
    if chunk_size != 'auto':
        return chunk_size
    return CUDA_CHUNK_SIZE if device.type == 'cuda' else cpu_default


class SparseHGTConv(HGTParameters, MessagePassing):
    r"""The shared parameters as a PyG ``MessagePassing`` module (sum
    aggregation over targets, nodes along dimension 0): the base of every
    sparse backend, which adds only its ``forward``.

    Args: as :class:`~torch_geometric_hgt.params.HGTParameters`.
    """
    @V.renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 max_len: int = 240, validate: bool = True):
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, use_RTE, max_len,
                         validate,
                         aggr='add', node_dim=0)

    def check_edge_mask(self, edge_mask: Optional[Tensor],
                        edge_type: Tensor) -> None:
        """``edge_mask``: one real weight per edge, or :obj:`None`."""
        if edge_mask is None:
            return
        if not isinstance(edge_mask, Tensor) or \
                not edge_mask.is_floating_point() or \
                edge_mask.shape != edge_type.shape:
            raise ValueError(f"'edge_mask' must be a float tensor of shape "
                             f"[{edge_type.numel()}] (one weight per edge; "
                             f"got {edge_mask!r})")

    def masked_forward(self, x: Tensor, node_type: Tensor,
                       edge_index: Tensor, edge_type: Tensor,
                       edge_time: Optional[Tensor],
                       edge_mask: Optional[Tensor],
                       return_attention_weights: bool
                       ) -> Optional[Union[Tensor, Tuple[Tensor, Tensor]]]:
        """The layer's result where ``edge_mask`` is given (by
        :meth:`vectorized`, whichever the layer), else :obj:`None`: the
        chunked layers' own paths carry no mask gradient."""
        self.check_edge_mask(edge_mask, edge_type)
        if edge_mask is None:
            return None
        out, att = self.vectorized(x, node_type, edge_index, edge_type,
                                   edge_time, edge_mask)
        return self._result(out, att, return_attention_weights)

    def vectorized(self, x: Tensor, node_type: Tensor, edge_index: Tensor,
                   edge_type: Tensor, edge_time: Optional[Tensor],
                   edge_mask: Optional[Tensor] = None
                   ) -> Tuple[Tensor, Tensor]:
        """``(out, attention)`` by plain torch ops (see
        :class:`~torch_geometric_hgt.VectorizedHGTConv`), each message
        times ``edge_mask`` after attention where given: the path every
        layer takes for masks, which autograd differentiates."""
        from torch_geometric_hgt.conv.vectorized import vectorized_attention
        from torch_geometric_hgt.ops import typed_linear, update_hard
        N, H, d, D = x.size(0), self.n_heads, self.d_k, self.out_dim
        kqv = typed_linear(x, node_type, *self.kqv_weight())
        k, q, v = kqv.view(N, 3, H, d).unbind(1)
        rte = None
        if self.use_RTE:
            rte = (self.rte_kv_table(),
                   node_type.index_select(0, edge_index[0]) * self.max_len +
                   edge_time)
        agg, alpha = vectorized_attention(q, k, v, edge_index, edge_type,
                                          self.relation_att,
                                          self.relation_pri,
                                          self.relation_msg, rte, edge_mask)
        a_out = typed_linear(F.gelu(agg.reshape(N, D)), node_type,
                             *self.a_weight())
        return update_hard(self, x, node_type, a_out), alpha

    def _result(self, out: Tensor, att: Tensor,
                return_attention_weights: bool
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """``out`` (and ``att``, also kept as ``self.att`` like pyHGT)."""
        self.att = att if return_attention_weights else None
        return (out, att) if return_attention_weights else out
