from typing import Optional, Tuple, Union

import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint as grad_checkpoint
from torch_geometric.nn import MessagePassing

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.buffers import BufferPool
from torch_geometric_hgt.functional import dispatch
from torch_geometric_hgt.functional.attention import hgt_attention
from torch_geometric_hgt.functional.backends.pooled_layer import \
    pooled_forward
from torch_geometric_hgt.functional.backends.target_chunked import \
    target_chunked_forward
from torch_geometric_hgt.functional.linear import (type_order, typed_linear,
                                                   typed_linear_sorted)
from torch_geometric_hgt.functional.update import hgt_update
from torch_geometric_hgt.params import HGTParameters


class SparseHGTConv(HGTParameters, MessagePassing):
    r"""The shared parameters as a PyG ``MessagePassing`` module and the
    one forward of the sparse layers: typed projections,
    :func:`~torch_geometric_hgt.functional.hgt_attention` with the class's
    :attr:`backend`, the output map and
    :func:`~torch_geometric_hgt.functional.hgt_update`, or the whole-layer
    Function :func:`~torch_geometric_hgt.functional.dispatch.layer_route`
    picks. Subclasses set the backend and their options.

    Args: as :class:`~torch_geometric_hgt.params.HGTParameters`.
    """
    #: the ``hgt_attention`` backend this class runs
    backend: str = 'vectorized'
    #: edges per chunk of the chunked backends
    chunk_size: dispatch.ChunkSize = 'auto'
    #: recompute the attention weights in backward (``'memory_efficient'``)
    checkpoint: bool = False
    #: buffers of the ``'ultrafast'`` layer Function (:obj:`None`: none)
    pool: Optional[BufferPool] = None

    @V.renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 max_len: int = 240, validate: bool = True):
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, use_RTE, max_len,
                         validate,
                         aggr='add', node_dim=0)

    def forward(self, x: Tensor, node_type: Tensor, edge_index: Tensor,
                edge_type: Tensor, edge_time: Optional[Tensor] = None,
                return_attention_weights: bool = False,
                edge_mask: Optional[Tensor] = None
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        self.check_sparse(x, node_type, edge_index, edge_type, edge_time)
        self.check_edge_mask(edge_mask, edge_type)
        E = edge_type.numel()
        backend = dispatch.select_backend(self.backend, x.device, E,
                                          edge_mask is not None)
        route = dispatch.layer_route(backend, x, self.use_RTE,
                                     self.pool is not None,
                                     self.relation_att.dtype)
        if route == 'pooled':
            out, att = pooled_forward(
                self, x, node_type, edge_index, edge_type,
                dispatch.edges_per_chunk(self.chunk_size, backend, x.device,
                                         E), self.pool)
        elif route == 'target_chunked':
            out, att = target_chunked_forward(
                self, x, node_type, edge_index, edge_type, edge_time,
                dispatch.edges_per_chunk(self.chunk_size, backend, x.device,
                                         E),
                self.checkpoint, return_attention_weights)
        else:
            args = (backend, x, node_type, edge_index, edge_type, edge_time,
                    edge_mask)
            if self.checkpoint and self.training:
                out, att = grad_checkpoint(self.edge_route, *args,
                                           use_reentrant=False)
            else:
                out, att = self.edge_route(*args)
        self.att = att if return_attention_weights else None
        return (out, att) if return_attention_weights else out

    def edge_route(self, backend: str, x: Tensor, node_type: Tensor,
                   edge_index: Tensor, edge_type: Tensor,
                   edge_time: Optional[Tensor], edge_mask: Optional[Tensor]
                   ) -> Tuple[Tensor, Tensor]:
        """``(out, attention)``: projections, the edge phase by
        ``backend``, the update."""
        N, H, d, D = x.size(0), self.n_heads, self.d_k, self.out_dim
        rank = None
        if dispatch.sort_nodes(backend):  # one GEMM per type on a slice
            perm, rank, sizes = type_order(node_type, self.num_node_types)
            x, node_type = x.index_select(0, perm), node_type[perm]
            edge_index = rank[edge_index]

            def lin(inp: Tensor, w: Tensor, b: Tensor) -> Tensor:
                return typed_linear_sorted(inp, sizes, w, b)
        else:  # no host sync: all-types GEMMs and a gather

            def lin(inp: Tensor, w: Tensor, b: Tensor) -> Tensor:
                return typed_linear(inp, node_type, w, b)

        k, q, v = lin(x, *self.kqv_weight()).view(N, 3, H, d).unbind(1)
        rte = None
        if self.use_RTE:
            rte = (self.rte_kv_table(),
                   node_type.index_select(0, edge_index[0]) * self.max_len +
                   edge_time)
        agg, att = hgt_attention(q, k, v, edge_index, edge_type,
                                 self.relation_att, self.relation_pri,
                                 self.relation_msg, rte=rte,
                                 edge_mask=edge_mask, backend=backend,
                                 chunk_size=self.chunk_size)
        a = lin(F.gelu(agg.to(x.dtype).reshape(N, D)), *self.a_weight())
        out = hgt_update(a, x, node_type, self.update_weights(),
                         self.training)
        if rank is not None:
            out = out.index_select(0, rank)
        return out, att.to(out.dtype)

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
