"""Model stacks for soft dense graphs: :class:`DenseHGT` and the users'
original :class:`DifferentiableHGT`."""
from typing import Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Linear, ModuleList

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.dense.planner import checkpointed_chunks
from torch_geometric_hgt.dense.conv import DenseHGTConv
from torch_geometric_hgt.functional.dispatch import (check_chunk_size,
                                                     dense_backend)
from torch_geometric_hgt.dense.legacy import DifferentiableDenseHGTConv
from torch_geometric_hgt.soft_graph import SoftGraph


class SoftGraphStack(torch.nn.Module):
    """``input_projection = Linear(T, in_dim)`` and dense layers
    ``in_dim -> hidden_dim -> ... -> out_dim`` of class ``layer_cls``,
    run over chunks of graphs by the subclass's ``forward``."""
    def __init__(self, layer_cls: type, in_dim: int, hidden_dim: int,
                 out_dim: int, num_node_types: int, num_relations: int,
                 n_heads: int, n_layers: int, dropout: float,
                 use_norm: bool, chunk_size: Union[int, str, None],
                 validate_layers: bool = True):
        super().__init__()
        V.check_positive_int('n_layers', n_layers)
        check_chunk_size(chunk_size)
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


class DifferentiableHGT(SoftGraphStack):
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
        return checkpointed_chunks(
            self._forward, (P, hgt_data['adj_matrix'],
                            hgt_data['edge_types']), self.chunk_size,
            self.parameters())

    def _forward(self, P: Tensor, adj: Tensor, E: Tensor) -> Tensor:
        h = self._project(P)
        for layer in self.layers:
            h = layer(h, P, adj, E)
        return h


#: the name the users were told to switch to
OptimizedDifferentiableHGT = DifferentiableHGT


class DenseHGT(SoftGraphStack):
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
        if self.checkpoint or dense_backend(
                first, self.layers[0].relation_att.dtype) != 'function':
            return checkpointed_chunks(self._forward, inputs,
                                       self.chunk_size, self.parameters())
        return self._forward(*inputs, self.chunk_size)

    def _forward(self, x: Optional[Tensor], P: Tensor, adj: Tensor,
                 E: Tensor, node_mask: Optional[Tensor],
                 chunk_size=None) -> Tensor:
        """All layers; on one chunk (``chunk_size=None``, inside the
        checkpoint) or each layer over chunks of ``chunk_size``."""
        h = self._project(P) if x is None else x
        for layer in self.layers:
            h = layer.run_chunk(h, P, adj, E, node_mask) \
                if chunk_size is None else \
                layer.run(h, P, adj, E, node_mask, chunk_size)
        return h
