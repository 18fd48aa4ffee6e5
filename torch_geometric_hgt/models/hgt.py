"""The sparse model stack :class:`HGT` (pyHGT's ``GNN``)."""
from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.nn import Linear, ModuleList

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.conv import CONVS
from torch_geometric_hgt.functional.linear import typed_linear


def conv_class(name: str) -> type:
    """The sparse layer class registered under ``name``."""
    if name not in CONVS:
        raise ValueError(f"'conv' must be one of {sorted(CONVS)} "
                         f"(got {name!r})")
    return CONVS[name]


class HGT(torch.nn.Module):
    r"""A stack of HGT layers as pyHGT's ``GNN``: per-type input adapters
    :math:`h_n = \tanh(W_{\tau(n)} x_n + b_{\tau(n)})`, dropout, then
    ``n_layers`` convolutions ``hidden_dim -> hidden_dim``.

    Args:
        in_dim (int or Sequence[int]): Input feature size, or one per node
            type (then use :meth:`forward_hetero` or pass a list ``x``).
        hidden_dim (int): Hidden (and output) size.
        num_node_types (int): Number of node types.
        num_relations (int): Number of relations.
        n_heads (int, optional): Attention heads. (default: :obj:`4`)
        n_layers (int, optional): Number of convolutions. (default: :obj:`2`)
        dropout (float, optional): Dropout. (default: :obj:`0.2`)
        conv (str, optional): ``'loop'``, ``'vectorized'``, ``'ultrafast'``
            or ``'memory_efficient'``. (default: :obj:`'ultrafast'`)
        prev_norm (bool, optional): LayerNorm in all but the last layer.
            (default: :obj:`True`)
        last_norm (bool, optional): LayerNorm in the last layer.
            (default: :obj:`True`)
        use_RTE (bool, optional): Relative temporal encoding.
            (default: :obj:`False`)
        **conv_kwargs: Passed to every convolution (e.g. ``chunk_size``).

    Shapes:
        - **input:** ``x`` :math:`(N, F_{in})` (or one
          :math:`(N_t, F_{in,t})` per type, nodes ordered by type),
          ``node_type`` :math:`(N)`, ``edge_index`` :math:`(2, E)`,
          ``edge_type`` :math:`(E)`, optional ``edge_time`` :math:`(E)`;
          or a :class:`~torch_geometric.data.HeteroData` for
          :meth:`forward_hetero`
        - **output:** :math:`(N, F_{hid})` (:meth:`forward_hetero`: one
          :math:`(N_t, F_{hid})` per node type)
    """
    @V.renamed_arguments({'num_types': 'num_node_types'})
    def __init__(self, in_dim: Union[int, Sequence[int]], hidden_dim: int,
                 num_node_types: int, num_relations: int, n_heads: int = 4,
                 n_layers: int = 2, dropout: float = 0.2,
                 conv: str = 'ultrafast', prev_norm: bool = True,
                 last_norm: bool = True, use_RTE: bool = False,
                 **conv_kwargs):
        super().__init__()
        in_dims = [in_dim] * num_node_types if isinstance(in_dim, int) \
            else list(in_dim)
        if len(in_dims) != num_node_types:
            raise ValueError(f"'in_dim' lists {len(in_dims)} sizes for "
                             f"{num_node_types} node types")
        V.check_positive_int('n_layers', n_layers)
        self.in_dims = in_dims
        self.hidden_dim = hidden_dim
        self.num_node_types = num_node_types
        self.conv_name = conv
        cls = conv_class(conv)
        self.adapt_ws = ModuleList([Linear(d, hidden_dim) for d in in_dims])
        self.drop = torch.nn.Dropout(dropout)
        self.gcs = ModuleList([
            cls(hidden_dim, hidden_dim, num_node_types, num_relations, n_heads,
                dropout=dropout,
                use_norm=prev_norm if i < n_layers - 1 else last_norm,
                use_RTE=use_RTE, **conv_kwargs) for i in range(n_layers)
        ])

    @property
    def num_types(self) -> int:
        """pyHGT's name of :attr:`num_node_types`."""
        return self.num_node_types

    def reset_parameters(self):
        for lin in self.adapt_ws:
            lin.reset_parameters()
        for conv in self.gcs:
            conv.reset_parameters()

    def forward(self, x: Union[Tensor, Sequence[Tensor]], node_type: Tensor,
                edge_index: Tensor, edge_type: Tensor,
                edge_time: Optional[Tensor] = None) -> Tensor:
        """``x [N, in_dim]`` (or a list of per-type feature tensors, nodes
        ordered by type) -> ``[N, hidden_dim]``."""
        if isinstance(x, Tensor) and len(set(self.in_dims)) != 1:
            raise ValueError("'x' must be a list of per-type tensors when "
                             "in_dim differs between node types")
        if self.gcs[0].validate:
            self._check_inputs(x, node_type)
        if isinstance(x, Tensor):
            w = torch.stack([lin.weight for lin in self.adapt_ws])
            b = torch.stack([lin.bias for lin in self.adapt_ws])
            h = typed_linear(x, node_type, w, b)
        else:
            h = torch.cat([lin(xt) for lin, xt in zip(self.adapt_ws, x)], 0)
        h = self.drop(torch.tanh(h))
        for conv in self.gcs:
            h = conv(h, node_type, edge_index, edge_type, edge_time)
        return h

    def _check_inputs(self, x: Union[Tensor, Sequence[Tensor]],
                      node_type: Tensor):
        """What the adapters read; the convolutions check the rest."""
        V.check_tensor('node_type', node_type, 1, 'long')
        V.check_range('node_type', node_type, self.num_node_types,
                      'node type ids')
        if isinstance(x, Tensor):
            V.check_tensor('x', x, 2, 'float')
            V.check_size('x', x, 1, self.in_dims[0], 'in_dim')
            V.check_size('x', x, 0, node_type.numel(), 'number of nodes')
            return
        if len(x) != self.num_node_types:
            raise ValueError(f"'x' must list one tensor per node type "
                             f"({self.num_node_types}), got {len(x)}")
        for t, (xt, dim) in enumerate(zip(x, self.in_dims)):
            V.check_tensor(f'x[{t}]', xt, 2, 'float')
            V.check_size(f'x[{t}]', xt, 1, dim, f'in_dim of type {t}')
        if V.is_compiling():  # the per-type counts need a host sync
            return
        rows = [xt.size(0) for xt in x]
        counts = torch.bincount(node_type,
                                minlength=self.num_node_types).tolist()
        if rows != counts or bool((node_type.diff() < 0).any()):
            raise ValueError(f"'x' lists {rows} rows per type, so "
                             f"'node_type' must hold them sorted by type; "
                             f"it holds {counts} per type"
                             + ("" if rows != counts else ", unsorted"))

    def forward_hetero(self, data) -> Dict[str, Tensor]:
        """Runs on a :class:`~torch_geometric.data.HeteroData` (node type
        ``i`` is ``data.node_types[i]``, relation ``r`` is
        ``data.edge_types[r]``; node features ``x``, per-type sizes allowed;
        with ``use_RTE``, an ``edge_time`` attribute on every edge type) and
        returns a dict of ``[N_type, hidden_dim]`` outputs per node type."""
        R = self.gcs[0].num_relations
        if len(data.node_types) != self.num_node_types or \
                len(data.edge_types) > R:
            raise ValueError(f"'data' has {len(data.node_types)} node types "
                             f"and {len(data.edge_types)} edge types, the "
                             f"model {self.num_node_types} and at most {R}")
        for nt in data.node_types:
            if 'x' not in data[nt]:
                raise ValueError(f"data[{nt!r}] has no 'x'")
        use_rte = self.gcs[0].use_RTE
        for et in data.edge_types if use_rte else ():
            if 'edge_time' not in data[et]:
                raise ValueError(f"data[{et!r}] has no 'edge_time' (the "
                                 f"model has use_RTE=True)")
        homo = data.to_homogeneous(node_attrs=[], edge_attrs=[])
        edge_time = None
        if use_rte:
            edge_time = torch.cat(
                [data[et].edge_time for et in data.edge_types])
        out = self.forward([data[nt].x for nt in data.node_types],
                           homo.node_type, homo.edge_index, homo.edge_type,
                           edge_time)
        sizes = [data[nt].num_nodes for nt in data.node_types]
        return dict(zip(data.node_types, out.split(sizes)))
