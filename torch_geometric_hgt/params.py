"""The one parameter module every HGT layer shares (pyHGT's state_dict
layout)."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear, ModuleList, Parameter

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.functional.linear import (query_fold,
                                                   temporal_table)
from torch_geometric_hgt.functional.update import (UpdateWeights,
                                                   hgt_update,
                                                   hgt_update_soft)
from torch_geometric_hgt.soft_graph import validate_soft_graph


class RelTemporalEncoding(torch.nn.Module):
    r"""Relative temporal encoding of HGT:
    :math:`\mathrm{RTE}(x, t) = x + \mathrm{lin}(\mathrm{emb}[t])`, where
    :obj:`emb` starts as the sinusoid table
    :math:`\mathrm{emb}[p, 2i] = \sin(p / 10000^{2i/D}) / \sqrt{D}`,
    :math:`\mathrm{emb}[p, 2i+1] = \cos(p / 10000^{2i/D}) / \sqrt{D}`.

    Args:
        n_hid (int): Feature size :math:`D`.
        max_len (int, optional): Number of distinct relative times.
            (default: :obj:`240`)

    Shapes:
        - **input:** features ``x`` :math:`(E, D)`, relative times ``t``
          :math:`(E)` in ``[0, max_len)``
        - **output:** :math:`(E, D)`
    """
    def __init__(self, n_hid: int, max_len: int = 240):
        super().__init__()
        V.check_positive_int('n_hid', n_hid)
        V.check_positive_int('max_len', max_len)
        self.n_hid = n_hid
        self.max_len = max_len
        self.emb = torch.nn.Embedding(max_len, n_hid)
        self.lin = Linear(n_hid, n_hid)
        self.reset_parameters()

    def reset_parameters(self):
        position = torch.arange(0., self.max_len).unsqueeze(1)
        div_term = torch.exp(
            torch.arange(0, self.n_hid, 2) * -(math.log(10000.0) / self.n_hid))
        table = torch.zeros(self.max_len, self.n_hid)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)[:, :self.n_hid // 2]
        with torch.no_grad():
            self.emb.weight.copy_(table / math.sqrt(self.n_hid))
        self.lin.reset_parameters()

    def table(self) -> Tensor:
        """``lin(emb[p])`` for every time ``p``: ``[max_len, n_hid]``."""
        return self.lin(self.emb.weight)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return x + self.lin(self.emb(t))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.n_hid}, '
                f'max_len={self.max_len})')


class HGTParameters(torch.nn.Module):
    r"""Weights of one HGT layer, laid out exactly as pyHGT's ``HGTConv``
    (``k_linears``, ``q_linears``, ``v_linears``, ``a_linears``, ``norms``,
    ``relation_pri``, ``relation_att``, ``relation_msg``, ``skip``, ``emb``),
    so every layer of this package loads every other's and pyHGT's
    state_dicts. Backends subclass it and implement only ``forward``.

    Args:
        in_dim (int): Input feature size.
        out_dim (int): Output feature size, divisible by :obj:`n_heads`.
        num_node_types (int): Number of node types :math:`T` (pyHGT's
            ``num_types=`` keyword still works, with a ``FutureWarning``).
        num_relations (int): Number of relations :math:`R`.
        n_heads (int): Number of attention heads :math:`H`.
        dropout (float, optional): Dropout on the output transform.
            (default: :obj:`0.2`)
        use_norm (bool, optional): Per-type LayerNorm on the output.
            (default: :obj:`True`)
        use_RTE (bool, optional): Relative temporal encoding of sources.
            (default: :obj:`False`)
        max_len (int, optional): Number of relative times for RTE.
            (default: :obj:`240`)
        validate (bool, optional): Check inputs on every call (shapes,
            ranges, NaN). Set :obj:`False` (or assign ``layer.validate``)
            to skip the checks that cost a host sync. (default: :obj:`True`)
    """
    #: constructor options of a backend shown by ``repr`` (its own attrs)
    repr_options: Tuple[str, ...] = ()

    @V.renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: int, out_dim: int, num_node_types: int,
                 num_relations: int, n_heads: int, dropout: float = 0.2,
                 use_norm: bool = True, use_RTE: bool = False,
                 max_len: int = 240, validate: bool = True, **kwargs):
        super().__init__(**kwargs)
        for name, value in (('in_dim', in_dim), ('out_dim', out_dim),
                            ('num_node_types', num_node_types),
                            ('num_relations', num_relations),
                            ('n_heads', n_heads), ('max_len', max_len)):
            V.check_positive_int(name, value)
        if out_dim % n_heads != 0:
            raise ValueError(f"'out_dim' (got {out_dim}) must be divisible by "
                             f"'n_heads' (got {n_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.num_node_types = num_node_types
        self.num_relations = num_relations
        self.n_heads = n_heads
        self.d_k = out_dim // n_heads
        self.sqrt_dk = math.sqrt(self.d_k)
        self.use_norm = use_norm
        self.use_RTE = use_RTE
        self.max_len = max_len
        self.validate = validate
        self.att: Optional[Tensor] = None

        self.k_linears = ModuleList(
            [Linear(in_dim, out_dim) for _ in range(num_node_types)])
        self.q_linears = ModuleList(
            [Linear(in_dim, out_dim) for _ in range(num_node_types)])
        self.v_linears = ModuleList(
            [Linear(in_dim, out_dim) for _ in range(num_node_types)])
        self.a_linears = ModuleList(
            [Linear(out_dim, out_dim) for _ in range(num_node_types)])
        self.norms = ModuleList(
            [LayerNorm(out_dim) for _ in range(num_node_types)]
            if use_norm else [])
        H, d = n_heads, self.d_k
        self.relation_pri = Parameter(torch.empty(num_relations, H))
        self.relation_att = Parameter(torch.empty(num_relations, H, d, d))
        self.relation_msg = Parameter(torch.empty(num_relations, H, d, d))
        self.skip = Parameter(torch.empty(num_node_types))
        self.drop = torch.nn.Dropout(dropout)
        self.emb = RelTemporalEncoding(in_dim, max_len) if use_RTE else None
        self.reset_parameters()

    @property
    def num_types(self) -> int:
        """pyHGT's name of :attr:`num_node_types`."""
        return self.num_node_types

    def reset_parameters(self):
        for lins in (self.k_linears, self.q_linears, self.v_linears,
                     self.a_linears, self.norms):
            for lin in lins:
                lin.reset_parameters()
        bound = math.sqrt(6.0 / (2 * self.d_k))  # PyG's glorot on [d, d]
        with torch.no_grad():
            self.relation_pri.fill_(1.0)
            self.relation_att.uniform_(-bound, bound)
            self.relation_msg.uniform_(-bound, bound)
            self.skip.fill_(1.0)
        if self.emb is not None:
            self.emb.reset_parameters()

    # Stacked views of the per-type weights: cheap (T small), autograd-safe.
    def kqv_weight(self) -> Tuple[Tensor, Tensor]:
        """K, Q, V weights of all types: ``[T, 3 * out_dim, in_dim]`` and
        bias ``[T, 3 * out_dim]``."""
        w = torch.stack([
            torch.cat([k.weight, q.weight, v.weight], 0) for k, q, v in zip(
                self.k_linears, self.q_linears, self.v_linears)
        ])
        b = torch.stack([
            torch.cat([k.bias, q.bias, v.bias], 0) for k, q, v in zip(
                self.k_linears, self.q_linears, self.v_linears)
        ])
        return w, b

    def a_weight(self) -> Tuple[Tensor, Tensor]:
        """Output weights ``[T, out_dim, out_dim]`` and bias ``[T,
        out_dim]``."""
        return (torch.stack([lin.weight for lin in self.a_linears]),
                torch.stack([lin.bias for lin in self.a_linears]))

    def query_fold_weight(self) -> Tensor:
        """:func:`~torch_geometric_hgt.functional.linear.query_fold` of this
        layer's relation weights, ``[R, H, d, d]``."""
        return query_fold(self.relation_att, self.relation_pri)

    def rte_kv_table(self) -> Tensor:
        """:func:`~torch_geometric_hgt.functional.linear.temporal_table` of
        this layer: ``[T * max_len, 2 * out_dim]``, row ``t * max_len +
        p``."""
        return temporal_table(
            self.emb.table(),
            torch.stack([k.weight for k in self.k_linears]),
            torch.stack([v.weight for v in self.v_linears]))

    def gated_a_weight(self) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """:meth:`a_weight` with the skip gate's ``sigmoid(skip_t)``
        folded into ``W_t`` and ``b_t``, and the input's weight
        ``1 - sigmoid(skip_t)`` ``[T]`` (``None`` without gate, i.e. when
        ``in_dim != out_dim``)."""
        w, b = self.a_weight()
        if self.in_dim != self.out_dim:
            return w, b, None
        gate = torch.sigmoid(self.skip)
        T = w.size(0)
        return w * gate.view(T, 1, 1), b * gate.view(T, 1), 1 - gate

    def norm_weight(self) -> Optional[Tuple[Tensor, Tensor]]:
        """LayerNorm affine weights ``[T, out_dim]`` (``None`` without
        norm)."""
        if not self.use_norm:
            return None
        return (torch.stack([n.weight for n in self.norms]),
                torch.stack([n.bias for n in self.norms]))

    def update_weights(self, node_type: Optional[int] = None
                       ) -> UpdateWeights:
        """The update's gate, norm and dropout as tensors
        (:func:`~torch_geometric_hgt.functional.hgt_update`): of every type
        (``[T]``, ``[T, out_dim]``), or of ``node_type`` alone."""
        skip = self.skip if self.in_dim == self.out_dim else None
        if node_type is None:
            norm = self.norm_weight()
        else:
            skip = None if skip is None else skip[node_type]
            norm = None if not self.use_norm else (
                self.norms[node_type].weight, self.norms[node_type].bias)
        return UpdateWeights(skip, *(norm or (None, None)), self.norm_eps,
                             self.drop.p)

    def update_as_type(self, agg: Tensor, x: Tensor, t: int) -> Tensor:
        """The update with every row taken as node type ``t``, through
        type ``t``'s own modules: the loop references' form."""
        return hgt_update(self.a_linears[t](F.gelu(agg)), x, None,
                          self.update_weights(t), self.training)

    def update_soft(self, agg: Tensor, x: Tensor, P: Tensor,
                    dropout_per_type: bool = True) -> Tensor:
        """:func:`~torch_geometric_hgt.functional.hgt_update_soft` with
        this layer's weights, for soft node types ``P [..., T]``."""
        return hgt_update_soft(agg, x, P, *self.gated_a_weight(),
                               self.update_weights(), self.training,
                               dropout_per_type)

    @property
    def norm_eps(self) -> float:
        """The LayerNorms' epsilon (torch's default without norm)."""
        return self.norms[0].eps if self.use_norm else 1e-5

    def check_sparse(self, x: Tensor, node_type: Tensor, edge_index: Tensor,
                     edge_type: Tensor, edge_time: Optional[Tensor]):
        if self.validate:
            V.check_sparse_inputs(self, x, node_type, edge_index, edge_type,
                                  edge_time)

    def check_soft(self, x: Tensor, P: Tensor, adj: Tensor, E: Tensor,
                   node_mask: Optional[Tensor] = None,
                   names: Tuple[str, str, str, str] = (
                       'node_types', 'adj', 'edge_types', 'x')):
        """The dense layers' inputs, named ``names`` in errors (see
        :func:`~torch_geometric_hgt.soft_graph.validate_soft_graph`)."""
        if not self.validate:
            return
        validate_soft_graph(P, adj, E, node_mask, x, names=names)
        V.check_size(names[3], x, 2, self.in_dim, 'in_dim')
        V.check_matches_parameters(names[3], x, self.skip)
        V.check_size(names[0], P, 2, self.num_node_types, 'num_node_types')
        V.check_size(names[2], E, 3, self.num_relations, 'num_relations')

    @classmethod
    def from_pyg(cls, conv, **kwargs) -> 'HGTParameters':
        r"""Builds this layer from a :class:`torch_geometric.nn.HGTConv`
        (``in_channels`` one int): node type ``i`` is ``conv.node_types[i]``
        and relation ``r`` is ``conv.edge_types[r]``, the numbering of
        :meth:`HeteroData.to_homogeneous` on data with the same metadata.
        The result has ``use_norm=False`` and ``dropout=0`` (PyG's layer has
        neither)."""
        from torch_geometric_hgt.interop import from_pyg
        return from_pyg(cls, conv, **kwargs)

    def to_pyg(self, metadata=None, relation_ids=None):
        """Exports the weights (``use_norm=False`` only) to a
        :class:`torch_geometric.nn.HGTConv`; see
        :func:`torch_geometric_hgt.interop.to_pyg`."""
        from torch_geometric_hgt.interop import to_pyg
        return to_pyg(self, metadata, relation_ids)

    def extra_repr_args(self) -> str:
        options = ''.join(f', {name}={getattr(self, name)!r}'
                          for name in self.repr_options)
        return (f'{self.in_dim}, {self.out_dim}, '
                f'num_node_types={self.num_node_types}, '
                f'num_relations={self.num_relations}, '
                f'n_heads={self.n_heads}, use_norm={self.use_norm}, '
                f'use_RTE={self.use_RTE}{options}')

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.extra_repr_args()})'
