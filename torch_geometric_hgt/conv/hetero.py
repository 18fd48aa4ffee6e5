"""PyG's :class:`torch_geometric.nn.HGTConv`, on this package's backends."""
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import LayerNorm, ModuleDict, Parameter
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense import HeteroDictLinear, HeteroLinear
from torch_geometric.nn.inits import ones
from torch_geometric.nn.parameter_dict import ParameterDict
from torch_geometric.typing import Adj, EdgeType, Metadata, NodeType

from torch_geometric_hgt.buffers import BufferPool, PoolOwner
from torch_geometric_hgt.conv.explain import EdgeMasks
from torch_geometric_hgt.conv.hetero_inputs import (check_arguments,
                                                    edge_inputs,
                                                    node_features,
                                                    one_edge_set)
from torch_geometric_hgt.conv.hetero_routes import (edge_route,
                                                    pooled_applies,
                                                    pooled_route)
from torch_geometric_hgt.functional.dispatch import (ChunkSize,
                                                     check_backend,
                                                     check_chunk_size,
                                                     check_memory_budget)
from torch_geometric_hgt.params import RelTemporalEncoding

AttentionDict = Dict[EdgeType, Tuple[Tensor, Tensor]]


class HGTConv(PoolOwner, MessagePassing):
    r"""The Heterogeneous Graph Transformer operator of `"Heterogeneous Graph
    Transformer" <https://arxiv.org/abs/2003.01332>`_: PyG's
    :class:`torch_geometric.nn.HGTConv` (constructor, ``forward``,
    state_dict, initialisation, results) on this package's backends; swap
    the import and keep the model, data pipeline and checkpoints.

    For an edge :math:`s \to t` of edge type :math:`r = (\phi(s), \cdot,
    \phi(t))` and head :math:`h` (:math:`d = F / H`):

    .. math::
        \alpha_{h}(s, t) &= \mathrm{softmax}_{s \in \mathcal{N}(t)}
        \left( \frac{\mu_{r,h}}{\sqrt{d}}\, Q_h(t) \cdot K_h(s)
        A_{r,h} \right)

        \mathbf{x}^{\prime}_t &= \beta_{\phi(t)} \,
        \mathrm{Drop}\left( W^{out}_{\phi(t)}\, \mathrm{gelu}\Big(
        \big\Vert_h \sum_{s} \alpha_h(s, t)\, V_h(s) M_{r,h} \Big) \right)
        + (1 - \beta_{\phi(t)})\, \mathbf{x}_t

    with :math:`K, Q, V` per node type (``kqv_lin``), :math:`A, M` per edge
    type and head (``k_rel``, ``v_rel``), :math:`\mu` (``p_rel``),
    :math:`\beta = \sigma(\mathrm{skip})` where the input size is
    ``out_channels`` (else 1). All edge types run as one
    :func:`~torch_geometric_hgt.functional.hgt_attention` call. Node types
    that are no edge type's destination, or missing from ``x_dict``, get
    no output.

    With ``'ultrafast'`` on CPU (float32/64, eager, no autocast, RTE, masks
    or budget, every node type of the call one input size and a
    destination) the layer runs :class:`UltraFastHGTConv`'s whole-layer
    Function, large intermediates kept between calls in :attr:`pool`
    (``pool.clear()`` or ``.to()`` frees them, ``pool = None`` turns the
    route off); results and dropout masks are the other route's.

    PyG's explainers reach the layer: masks set per edge type by
    :func:`~torch_geometric.explain.algorithm.utils.set_hetero_masks`
    multiply each message after attention, as
    ``MessagePassing.explain_message`` does (sigmoid when asked; masked
    calls run ``'vectorized'``), and ``AttentionExplainer`` reads the
    attention through the slots' message forward hooks.

    Args:
        in_channels (int or Dict[str, int]): Input size of every node type,
            or one per node type; :obj:`-1` infers it at the first call.
        out_channels (int): Output size :math:`F`, divisible by
            :obj:`heads`.
        metadata (Tuple[List[str], List[Tuple[str, str, str]]]): Node and
            edge types, as :meth:`torch_geometric.data.HeteroData.metadata`.
        heads (int, optional): Number of attention heads :math:`H`.
            (default: :obj:`1`)
        use_norm (bool, optional): Per-type LayerNorm on the output
            (pyHGT's); adds ``norms.*`` keys. (default: :obj:`False`)
        dropout (float, optional): Dropout on the output transform, before
            the skip gate (pyHGT's). (default: :obj:`0.0`)
        use_RTE (bool, optional): Relative temporal encoding of the sources
            (pyHGT's): ``forward`` then takes ``edge_time_dict``; needs one
            int ``in_channels``; adds ``emb.*`` keys. (default: :obj:`False`)
        max_len (int, optional): Number of relative times for RTE.
            (default: :obj:`240`)
        backend (str, optional): ``'ultrafast'``, ``'memory_efficient'``
            (bounded edge memory), ``'vectorized'`` (plain torch ops) or
            ``'auto'`` (:func:`~torch_geometric_hgt.functional.
            select_backend`); all give the same result. (default:
            :obj:`'auto'`)
        chunk_size (int, str or None, optional): Edges per chunk of the
            edge operator (speed only); :obj:`"auto"` takes the backend's
            default for the input's device, :obj:`None` one chunk.
            (default: :obj:`"auto"`)
        memory_budget (int, optional): Bytes the edge phase may allocate
            (forward, backward and gradients); with ``backend='auto'`` the
            fastest backend that fits runs (``hgt_attention``'s
            ``memory_budget``). (default: :obj:`None`)
        validate (bool, optional): Check the inputs (one host sync for all
            edge index ranges). (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features ``x_dict[t]`` :math:`(|\mathcal{V}_t|,
          F_{in,t})`, edge indices ``edge_index_dict[(s, r, t)]``
          :math:`(2, |\mathcal{E}_{s,r,t}|)` or sparse adjacencies
          :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)`, optional
          ``edge_time_dict[(s, r, t)]`` :math:`(|\mathcal{E}_{s,r,t}|)`
        - **output:** ``out_dict[t]`` :math:`(|\mathcal{V}_t|, F)`; with
          ``return_attention_weights=True`` also, per edge type,
          ``(edge_index, alpha)`` with ``edge_index`` :math:`(2, |
          \mathcal{E}|)` and ``alpha`` :math:`(|\mathcal{E}|, H)`
    """
    def __init__(self, in_channels: Union[int, Dict[str, int]],
                 out_channels: int, metadata: Metadata, heads: int = 1, *,
                 use_norm: bool = False, dropout: float = 0.0,
                 use_RTE: bool = False, max_len: int = 240,
                 backend: str = 'auto', chunk_size: ChunkSize = 'auto',
                 memory_budget: Optional[int] = None,
                 validate: bool = True, **kwargs):
        super().__init__(aggr='add', node_dim=0, **kwargs)
        node_types, edge_types, in_channels = check_arguments(
            in_channels, out_channels, metadata, heads, dropout, use_RTE)
        check_backend(backend)
        check_chunk_size(chunk_size)
        check_memory_budget(memory_budget)
        rte_size = set(in_channels.values())

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.node_types = node_types
        self.edge_types = edge_types
        self.edge_types_map = {et: i for i, et in enumerate(edge_types)}
        self.dst_node_types = {et[-1] for et in edge_types}
        self.use_norm = use_norm
        self.use_RTE = use_RTE
        self.max_len = max_len
        self.backend = backend
        self.chunk_size = chunk_size
        self.memory_budget = memory_budget
        self.validate = validate

        # PyG's modules in PyG's order: the same keys, and the same weights
        # as PyG's layer from the same seed
        self.kqv_lin = HeteroDictLinear(in_channels, out_channels * 3)
        self.out_lin = HeteroDictLinear(out_channels, out_channels,
                                        types=node_types)
        dim = out_channels // heads
        self.k_rel = HeteroLinear(dim, dim, heads * len(edge_types),
                                  bias=False, is_sorted=True)
        self.v_rel = HeteroLinear(dim, dim, heads * len(edge_types),
                                  bias=False, is_sorted=True)
        self.skip = ParameterDict(
            {nt: Parameter(torch.empty(1))
             for nt in node_types})
        self.p_rel = ParameterDict()
        for et in edge_types:
            self.p_rel['__'.join(et)] = Parameter(torch.empty(1, heads))
        self.norms = ModuleDict(
            {nt: LayerNorm(out_channels)
             for nt in node_types}) if use_norm else None
        self.drop = torch.nn.Dropout(dropout)
        self.emb = RelTemporalEncoding(rte_size.pop(), max_len) \
            if use_RTE else None
        # PyG's explainers reach the layer through these (set_hetero_masks)
        self.edge_masks = EdgeMasks(edge_types)
        self.pool = BufferPool()
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.kqv_lin.reset_parameters()
        self.out_lin.reset_parameters()
        self.k_rel.reset_parameters()
        self.v_rel.reset_parameters()
        ones(self.skip)
        ones(self.p_rel)
        if self.norms is not None:
            for norm in self.norms.values():
                norm.reset_parameters()
        if self.emb is not None:
            self.emb.reset_parameters()

    def forward(
        self,
        x_dict: Dict[NodeType, Tensor],
        edge_index_dict: Dict[EdgeType, Adj],
        edge_time_dict: Optional[Dict[EdgeType, Tensor]] = None,
        return_attention_weights: bool = False,
    ) -> Union[Dict[NodeType, Tensor],
               Tuple[Dict[NodeType, Tensor], AttentionDict]]:
        r"""Runs the layer.

        Args:
            x_dict (Dict[str, torch.Tensor]): Node features per node type.
            edge_index_dict (Dict[Tuple[str, str, str], torch.Tensor]):
                Per edge type a ``[2, E]`` (source, destination) index, a
                torch sparse adjacency ``[num_dst, num_src]`` or a
                ``torch_sparse.SparseTensor``; edge types of the metadata
                may be missing.
            edge_time_dict (Dict[Tuple[str, str, str], torch.Tensor],
                optional): Relative time ``[E]`` in ``[0, max_len)`` of
                every edge, for ``use_RTE=True``. (default: :obj:`None`)
            return_attention_weights (bool, optional): Also return
                ``(edge_index, alpha)`` per edge type, ``alpha [E, H]``.
                (default: :obj:`False`)
        """
        xs = node_features(self, x_dict)
        edges = edge_inputs(self, xs, edge_index_dict, edge_time_dict)
        if not xs:
            return ({}, {}) if return_attention_weights else {}
        sizes = [x.size(0) for x in xs.values()]
        starts = dict(zip(xs, [sum(sizes[:i]) for i in range(len(sizes))]))
        device = next(iter(xs.values())).device
        edge_index, edge_type, rows = one_edge_set(self, edges, starts,
                                                   device)
        blocks = (sizes, [list(xs).index(et[2]) for et in edges])
        mask = self.edge_masks.mask_of(edges)
        if pooled_applies(self, xs, edge_type.numel(), mask):
            out_dict, alpha = pooled_route(self, xs, edges, edge_index,
                                           edge_type, blocks)
        else:
            out_dict, alpha = edge_route(self, xs, edges, edge_index,
                                         edge_type, rows, mask, blocks)
        alpha = alpha.split([ei.size(1) for ei, _ in edges.values()])
        self.edge_masks.report(edges, alpha)
        if not return_attention_weights:
            return out_dict
        dtype = next(iter(xs.values())).dtype
        return out_dict, {et: (ei, a.to(dtype)) for (et, (ei, _)), a in
                          zip(edges.items(), alpha)}

    def __repr__(self) -> str:
        extras = ''.join(
            f', {name}={getattr(self, name)!r}'
            for name, default in (('use_norm', False), ('use_RTE', False),
                                  ('backend', 'auto'))
            if getattr(self, name) != default)
        return (f'{self.__class__.__name__}(-1, {self.out_channels}, '
                f'heads={self.heads}{extras})')
