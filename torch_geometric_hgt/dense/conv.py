from typing import Optional, Union

from torch import Tensor

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.dense import math as M
from torch_geometric_hgt.dense.core import dense_hgt
from torch_geometric_hgt.dense.planner import checkpointed_chunks
from torch_geometric_hgt.functional.dispatch import (check_chunk_size,
                                                     dense_backend)
from torch_geometric_hgt.params import HGTParameters

class DenseHGTConv(HGTParameters):
    r"""HGT on batches of small soft graphs: the expectation of the HGT score
    over independent node type and relation distributions, which is
    bilinear, so no :math:`T \times T \times R` expansion is formed. With
    ``adj[b, j, i]`` the weight of the edge :math:`j \to i` (row = source,
    as ``to_dense_adj``):

    .. math::
        \bar q_i = \sum_t P_i(t) (W^q_t x_i + b^q_t), \quad
        \bar k_j, \bar v_j \text{ likewise}

    .. math::
        s_h(j \to i) = \sum_r E_{ji}(r) \frac{\mu_{rh}}{\sqrt d}
        \bar q_{ih} \cdot (\bar k_{jh} A_{rh}), \qquad
        \alpha_h(j \to i) = \frac{\mathrm{adj}_{ji} e^{s_h(j \to i)}}
        {\sum_{j'} \mathrm{adj}_{j'i} e^{s_h(j' \to i)}}

    .. math::
        \mathrm{agg}_{ih} = \sum_j \alpha_h(j \to i) \sum_r E_{ji}(r)\,
        \bar v_{jh} M_{rh}, \qquad
        \mathrm{out}_i = \sum_t P_i(t)\, \mathrm{update}_t(\mathrm{agg}_i,
        x_i)

    with the sparse layers' update (in training one dropout mask per node,
    shared by all types). Targets without a positive ``adj`` get
    :math:`\alpha = 0`; padded nodes (``node_mask`` False) neither send nor
    receive and output 0 (gradient exactly 0 at their pairs). The gradient
    with respect to an ``adj`` of exactly 0 between real nodes (e.g. a
    straight-through hard edge) is :math:`e^{s_h(j \to i)}` over the
    target's denominator, its exponent capped at 80 above the target's
    best edge (larger score gaps can still overflow). With one-hot types
    and relations and 0/1 ``adj`` it equals the sparse layers on
    :func:`~torch_geometric_hgt.convert.dense_to_batch` of the same graph;
    same parameters and state_dict.

    Args:
        in_dim, out_dim, num_node_types, num_relations, n_heads, dropout,
        use_norm: as :class:`~torch_geometric_hgt.params.HGTParameters`.
        chunk_size (int, str or None, optional): Graphs per chunk:
            ``'auto'`` = 256 on CPU, 4096 on CUDA, ``None`` = one chunk. On
            CPU without ``checkpoint``, float32/float64 chunks run on
            ``torch.get_num_threads()`` single-threaded workers.
            (default: :obj:`'auto'`)
        checkpoint (bool, optional): Recompute each chunk in backward, so
            memory is bounded by one chunk. Otherwise float32/float64 keep
            :math:`4 (3 \cdot \mathrm{out} + H N + 2 T)` bytes per node
            (plus ``out`` bytes of dropout mask in training) for a
            hand-written backward, 1.8 KB at 128-d, 4 heads, 8 nodes, 6
            types (differentiable once); on CPU its soft update and, for
            8-node graphs with head size a multiple of 8, its attention run
            in C kernels compiled on first use (:mod:`~torch_geometric_hgt.
            native`; torch code without a compiler or with
            ``TORCH_GEOMETRIC_HGT_NATIVE=0``). bfloat16/float16, autocast
            and ``torch.compile`` always checkpoint. (default:
            :obj:`False`)
        validate (bool, optional): Check inputs. (default: :obj:`True`)

    Shapes:
        - **input:** ``x [B, N, in_dim]``, ``node_types [B, N, T]``,
          ``adj [B, N, N]``, ``edge_types [B, N, N, R]``,
          ``node_mask [B, N]`` (optional, bool)
        - **output:** ``[B, N, out_dim]``
    """
    repr_options = ('chunk_size', 'checkpoint')

    @V.renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True,
                 chunk_size: Union[int, str, None] = 'auto',
                 checkpoint: bool = False, validate: bool = True):
        super().__init__(in_dim, out_dim, num_node_types, num_relations,
                         n_heads, dropout, use_norm, False, validate=validate)
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        self.checkpoint = checkpoint

    def forward(self, x: Tensor, node_types: Tensor, adj: Tensor,
                edge_types: Tensor, node_mask: Optional[Tensor] = None
                ) -> Tensor:
        self.check_soft(x, node_types, adj, edge_types, node_mask)
        return self.run(x, node_types, adj, edge_types, node_mask,
                        self.chunk_size, self.checkpoint)

    def run(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
            node_mask: Optional[Tensor], chunk_size: Union[int, str, None],
            checkpoint: bool = False) -> Tensor:
        """The layer over chunks of ``chunk_size`` graphs, unvalidated:
        :func:`~torch_geometric_hgt.dense.core.dense_hgt` over all chunks,
        or through checkpointed chunks (``checkpoint``, or where the
        dispatcher picks the autograd backend)."""
        if checkpoint or dense_backend(x, self.relation_att.dtype) != \
                'function':
            return checkpointed_chunks(self.run_chunk,
                                       (x, P, adj, E, node_mask), chunk_size,
                                       self.parameters())
        return dense_hgt(x, P, adj, E, M.layer_weights(self),
                         M.layer_sizes(self), node_mask,
                         chunk_size=chunk_size)

    def run_chunk(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                  node_mask: Optional[Tensor], backend: str = 'auto'
                  ) -> Tensor:
        """The layer on one chunk of graphs by ``backend``, unvalidated."""
        return dense_hgt(x, P, adj, E, M.layer_weights(self),
                         M.layer_sizes(self), node_mask, backend=backend,
                         chunk_size=None)
