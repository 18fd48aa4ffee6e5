"""Model stacks: :class:`HGT` (sparse graphs, pyHGT's ``GNN``),
:class:`DenseHGT` (soft dense graphs) and the users' original
:class:`DifferentiableHGT`."""
from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.nn import Linear, ModuleList

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.conv import CONVS
from torch_geometric_hgt.dense.chunking import chunked
from torch_geometric_hgt.dense.conv import DenseHGTConv
from torch_geometric_hgt.dense.function import supported
from torch_geometric_hgt.dense.legacy import DifferentiableDenseHGTConv
from torch_geometric_hgt.functional.linear import typed_linear
from torch_geometric_hgt.soft_graph import SoftGraph


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
        if n_layers < 1:
            raise ValueError(f"'n_layers' must be >= 1 (got {n_layers})")
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


class _SoftGraphStack(torch.nn.Module):
    """``input_projection = Linear(T, in_dim)`` and dense layers
    ``in_dim -> hidden_dim -> ... -> out_dim`` of class ``layer_cls``,
    run over chunks of graphs by the subclass's ``forward``."""
    def __init__(self, layer_cls: type, in_dim: int, hidden_dim: int,
                 out_dim: int, num_node_types: int, num_relations: int,
                 n_heads: int, n_layers: int, dropout: float,
                 use_norm: bool, chunk_size: Union[int, str, None],
                 validate_layers: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"'n_layers' must be >= 1 (got {n_layers})")
        self.in_dim = in_dim
        self.num_node_types = num_node_types
        self.chunk_size = chunk_size
        self.input_projection = Linear(num_node_types, in_dim)
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
        self.layers = ModuleList([
            layer_cls(i, o, num_node_types, num_relations, n_heads, dropout,
                      use_norm, chunk_size=None, validate=validate_layers)
            for i, o in zip(dims[:-1], dims[1:])
        ])

    def reset_parameters(self):
        self.input_projection.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()

    def _check_types(self, name: str, P: Tensor):
        V.check_size(name, P, 2, self.num_node_types, 'num_node_types')
        V.check_matches_parameters(name, P, self.input_projection.weight,
                                   dtype=False)

    def _project(self, P: Tensor) -> Tensor:
        """The first layer's input from the type probabilities (cast to the
        weights' dtype, as the layers cast them)."""
        return self.input_projection(P.to(self.input_projection.weight.dtype))


class DifferentiableHGT(_SoftGraphStack):
    r"""The users' original soft-graph model, output for output:
    ``input_projection = Linear(num_node_types, in_dim)`` of the node type
    probabilities, then ``n_layers`` :class:`DifferentiableDenseHGTConv`
    (``in_dim -> hidden_dim -> ... -> out_dim``). State-dict keys
    ``input_projection.*`` and ``layers.{l}.*``.

    Args:
        in_dim (int): Size after the input projection.
        hidden_dim (int): Hidden size.
        out_dim (int): Output size.
        num_node_types (int): Number of node types :math:`T`.
        num_relations (int): Number of relations :math:`R`.
        n_heads (int, optional): Attention heads. (default: :obj:`4`)
        n_layers (int, optional): Number of layers. (default: :obj:`2`)
        dropout (float, optional): Dropout. (default: :obj:`0.2`)
        use_norm (bool, optional): Per-type LayerNorm. (default: :obj:`True`)
        chunk_size (int, str or None, optional): Graphs per chunk through
            all layers, with gradient checkpointing across chunks, so any
            number of graphs fits in memory; ``'auto'`` = 256 on CPU, 4096
            on CUDA (fewer launches), ``None`` = one chunk.
            (default: :obj:`'auto'`)

    Shapes:
        - **input:** ``forward(hgt_data)``, a dict with ``'node_types'``
          :math:`(B, N, T)`, ``'adj_matrix'`` :math:`(B, N, N)` (row =
          target) and ``'edge_types'`` :math:`(B, N, N, R)`
        - **output:** :math:`(B, N, F_{out})`
    """
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int,
                 num_node_types: int, num_relations: int, n_heads: int = 4,
                 n_layers: int = 2, dropout: float = 0.2,
                 use_norm: bool = True,
                 chunk_size: Union[int, str, None] = 'auto'):
        super().__init__(DifferentiableDenseHGTConv, in_dim, hidden_dim,
                         out_dim, num_node_types, num_relations, n_heads,
                         n_layers, dropout, use_norm, chunk_size)

    def forward(self, hgt_data: Dict[str, Tensor]) -> Tensor:
        if not isinstance(hgt_data, dict):
            raise TypeError(f"'hgt_data' must be a dict (got "
                            f"{type(hgt_data).__name__})")
        missing = {'node_types', 'adj_matrix', 'edge_types'} - set(hgt_data)
        if missing:
            raise ValueError(f"'hgt_data' is missing the keys "
                             f"{sorted(missing)}")
        P = hgt_data['node_types']
        V.check_tensor('hgt_data["node_types"]', P, 3, 'float')
        self._check_types('hgt_data["node_types"]', P)
        return chunked(self._forward, (P, hgt_data['adj_matrix'],
                                       hgt_data['edge_types']),
                       self.chunk_size, self.parameters())

    def _forward(self, P: Tensor, adj: Tensor, E: Tensor) -> Tensor:
        h = self._project(P)
        for layer in self.layers:
            h = layer(h, P, adj, E)
        return h


#: the name the users were told to switch to
OptimizedDifferentiableHGT = DifferentiableHGT


class DenseHGT(_SoftGraphStack):
    r"""A stack of :class:`DenseHGTConv` for batches of soft graphs
    (``in_dim -> hidden_dim -> ... -> out_dim``; the skip gate applies in
    the layers where sizes agree). Without node features the input is
    ``input_projection(node_types)``, a linear map of the type
    probabilities (as in the users' model).

    Args:
        in_dim (int): Input size (of ``x``, or of the projection).
        hidden_dim (int): Hidden size.
        out_dim (int): Output size.
        num_node_types (int): Number of node types :math:`T`.
        num_relations (int): Number of relations :math:`R`.
        n_heads (int, optional): Attention heads. (default: :obj:`4`)
        n_layers (int, optional): Number of layers. (default: :obj:`2`)
        dropout (float, optional): Dropout. (default: :obj:`0.2`)
        use_norm (bool, optional): Per-type LayerNorm. (default: :obj:`True`)
        chunk_size (int, str or None, optional): Graphs per chunk;
            ``'auto'`` = 256 on CPU, 4096 on CUDA (fewer launches),
            ``None`` = one chunk. (default: :obj:`'auto'`)
        checkpoint (bool, optional): Run chunks through all layers and
            recompute them in backward, so that memory is bounded by one
            chunk; otherwise each layer keeps what its hand-written
            backward needs (see :class:`DenseHGTConv`; 1.8 KB per node
            and layer at the default sizes), which is faster.
            bfloat16/float16, autocast and ``torch.compile`` always
            checkpoint.
            (default: :obj:`False`)

    Shapes:
        - **input:** ``forward(graph)``, a :class:`SoftGraph` or the users'
          dict: ``'node_types'`` :math:`(B, N, T)`, ``'adj_matrix'``
          :math:`(B, N, N)`, ``'edge_types'`` :math:`(B, N, N, R)`,
          optional ``'node_mask'`` :math:`(B, N)` and ``'x'`` :math:`(B, N,
          F_{in})`
        - **output:** :math:`(B, N, F_{out})`, 0 at padded nodes
    """
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int,
                 num_node_types: int, num_relations: int, n_heads: int = 4,
                 n_layers: int = 2, dropout: float = 0.2,
                 use_norm: bool = True,
                 chunk_size: Union[int, str, None] = 'auto',
                 checkpoint: bool = False):
        # the SoftGraph is validated once on construction, not per layer
        super().__init__(DenseHGTConv, in_dim, hidden_dim, out_dim,
                         num_node_types, num_relations, n_heads, n_layers,
                         dropout, use_norm, chunk_size, validate_layers=False)
        self.checkpoint = checkpoint

    def forward(self, graph: Union[SoftGraph, Dict[str, Tensor]]) -> Tensor:
        graph = SoftGraph.from_any(graph)
        if graph.x is not None:
            V.check_size('x', graph.x, 2, self.in_dim, 'in_dim')
            V.check_matches_parameters('x', graph.x,
                                       self.input_projection.weight)
        # the layers do not check the graph again
        self._check_types('node_types', graph.node_types)
        V.check_size('edge_types', graph.edge_types, 3,
                     self.layers[0].num_relations, 'num_relations')
        inputs = (graph.x, graph.node_types, graph.adj, graph.edge_types,
                  graph.node_mask)
        first = graph.x if graph.x is not None else \
            self.input_projection.weight
        if self.checkpoint or not supported(self.layers[0], first):
            return chunked(self._forward, inputs, self.chunk_size,
                           self.parameters())
        return self._forward(*inputs, self.chunk_size)

    def _forward(self, x: Optional[Tensor], P: Tensor, adj: Tensor,
                 E: Tensor, node_mask: Optional[Tensor],
                 chunk_size=None) -> Tensor:
        """All layers; on one chunk (``chunk_size=None``, inside the
        checkpoint) or each layer over chunks of ``chunk_size``."""
        h = self._project(P) if x is None else x
        for layer in self.layers:
            h = layer.chunk(h, P, adj, E, node_mask) if chunk_size is None \
                else layer.chunks(h, P, adj, E, node_mask, chunk_size)
        return h
