from typing import Tuple, Union

import torch
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

    def _result(self, out: Tensor, att: Tensor,
                return_attention_weights: bool
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """``out`` (and ``att``, also kept as ``self.att`` like pyHGT)."""
        self.att = att if return_attention_weights else None
        return (out, att) if return_attention_weights else out
