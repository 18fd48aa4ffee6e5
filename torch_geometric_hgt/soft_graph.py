"""Soft (probabilistic) graphs and the GraphVAE logits that produce them."""
import warnings
from dataclasses import dataclass, fields, replace
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_hgt import validation as V


@V.renamed_arguments({'tau': 'temperature'})
def gumbel_softmax_sample(logits: Tensor, temperature: float = 1.0,
                          hard: bool = False, gumbel: bool = True,
                          generator: Optional[torch.Generator] = None
                          ) -> Tensor:
    """Softmax of ``(logits + g) / temperature`` over the last dimension, with
    Gumbel noise ``g`` drawn from ``generator`` (``gumbel=False``: no
    noise). ``hard=True`` returns one-hot rows in the forward pass and the
    soft gradients (straight-through)."""
    if not temperature > 0:
        raise ValueError(f"'temperature' must be positive "
                         f"(got {temperature})")
    V.check_tensor('logits', logits, dtype='float')
    V.check_finite('logits', logits)
    if gumbel:
        u = torch.rand(logits.shape, generator=generator,
                       device=logits.device, dtype=torch.float32)
        g = -torch.log((-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10))
        logits = logits + g.to(logits.dtype)
    y = torch.softmax(logits / temperature, dim=-1)
    if not hard:
        return y
    one_hot = F.one_hot(y.argmax(-1), y.size(-1)).to(y.dtype)
    return one_hot - y.detach() + y


def gumbel_softmax(*args, **kwargs) -> Tensor:
    """Deprecated name of :func:`gumbel_softmax_sample` (it shadowed
    :func:`torch.nn.functional.gumbel_softmax`)."""
    warnings.warn("torch_geometric_hgt.gumbel_softmax is now "
                  "gumbel_softmax_sample", FutureWarning, stacklevel=2)
    return gumbel_softmax_sample(*args, **kwargs)


@dataclass
class SoftGraph:
    r"""A batch of ``B`` soft graphs of ``N`` (padded) nodes.

    Attributes:
        node_types: ``[B, N, T]`` type probabilities (rows sum to 1 for
            unmasked nodes).
        adj: ``[B, N, N]`` in ``[0, 1]``; ``adj[b, i, j]`` is the weight of
            the edge ``i -> j`` (row = source, as ``to_dense_adj``).
        edge_types: ``[B, N, N, R]`` relation probabilities of ``i -> j``.
        node_mask: optional ``[B, N]`` bool, ``False`` for padding.
        x: optional ``[B, N, F]`` node features.
        node_exist: optional ``[B, N]`` node existence probabilities.
    """
    node_types: Tensor
    adj: Tensor
    edge_types: Tensor
    node_mask: Optional[Tensor] = None
    x: Optional[Tensor] = None
    node_exist: Optional[Tensor] = None

    def __post_init__(self):
        validate_soft_graph(self.node_types, self.adj, self.edge_types,
                            self.node_mask, self.x, self.node_exist)

    @property
    def num_graphs(self) -> int:
        return self.node_types.size(0)

    @property
    def max_num_nodes(self) -> int:
        return self.node_types.size(1)

    def to(self, *args, **kwargs) -> 'SoftGraph':
        return replace(self, **{
            f.name: getattr(self, f.name).to(*args, **kwargs)
            for f in fields(self) if getattr(self, f.name) is not None
        })

    def hard(self, threshold: float = 0.5) -> 'SoftGraph':
        """One-hot types and relations (argmax) and a 0/1 adjacency
        (``adj > threshold``); masked nodes lose their edges."""
        V.check_unit_interval('threshold', threshold)
        T, R = self.node_types.size(-1), self.edge_types.size(-1)
        nt = F.one_hot(self.node_types.argmax(-1), T).to(self.node_types)
        et = F.one_hot(self.edge_types.argmax(-1), R).to(self.edge_types)
        adj = (self.adj > threshold).to(self.adj)
        if self.node_mask is not None:
            m = self.node_mask.to(adj)
            adj = adj * m.unsqueeze(-1) * m.unsqueeze(-2)
        return replace(self, node_types=nt, adj=adj, edge_types=et)

    @classmethod
    def from_any(cls, graph: Union['SoftGraph', Dict[str, Tensor]]
                 ) -> 'SoftGraph':
        """A :class:`SoftGraph` from itself or the users' dict."""
        if isinstance(graph, SoftGraph):
            return graph
        if not isinstance(graph, dict):
            raise TypeError(f"'graph' must be a SoftGraph or a dict "
                            f"(got {type(graph).__name__})")
        missing = {'node_types', 'adj_matrix', 'edge_types'} - set(graph)
        if missing:
            raise ValueError(f"'graph' is missing the keys {sorted(missing)}")
        return cls(graph['node_types'], graph['adj_matrix'],
                   graph['edge_types'], graph.get('node_mask'),
                   graph.get('x'), graph.get('node_exist'))


def validate_soft_graph(node_types: Tensor, adj: Tensor, edge_types: Tensor,
                        node_mask: Optional[Tensor] = None,
                        x: Optional[Tensor] = None,
                        node_exist: Optional[Tensor] = None,
                        names: Tuple[str, str, str, str] = (
                            'node_types', 'adj', 'edge_types', 'x')):
    """Shapes agree, probabilities in [0, 1], type rows sum to 1 for
    unmasked nodes, no NaN (errors name the arguments ``names``)."""
    n_types, n_adj, n_edge, n_x = names
    V.check_tensor(n_types, node_types, 3, 'float')
    B, N, _ = node_types.shape
    V.check_tensor(n_adj, adj, 3, 'float')
    if tuple(adj.shape) != (B, N, N):
        raise ValueError(f"'{n_adj}' must have shape [B, N, N] = "
                         f"[{B}, {N}, {N}] (got {tuple(adj.shape)})")
    V.check_tensor(n_edge, edge_types, 4, 'float')
    if tuple(edge_types.shape[:3]) != (B, N, N):
        raise ValueError(f"'{n_edge}' must have shape [B, N, N, R] with "
                         f"[B, N, N] = [{B}, {N}, {N}] "
                         f"(got {tuple(edge_types.shape)})")
    if node_mask is not None:
        V.check_tensor('node_mask', node_mask, 2)
        if node_mask.dtype != torch.bool:
            raise TypeError(f"'node_mask' must be torch.bool "
                            f"(got {node_mask.dtype})")
        if tuple(node_mask.shape) != (B, N):
            raise ValueError(f"'node_mask' must have shape [B, N] = "
                             f"[{B}, {N}] (got {tuple(node_mask.shape)})")
    if x is not None:
        V.check_tensor(n_x, x, 3, 'float')
        if tuple(x.shape[:2]) != (B, N):
            raise ValueError(f"'{n_x}' must have shape [B, N, F] with [B, N] "
                             f"= [{B}, {N}] (got {tuple(x.shape)})")
        V.check_finite(n_x, x)
    if node_exist is not None:
        V.check_tensor('node_exist', node_exist, 2, 'float')
        V.check_probabilities('node_exist', node_exist, False)
    V.check_same_device(**{n_types: node_types, n_adj: adj,
                           n_edge: edge_types, 'node_mask': node_mask,
                           n_x: x, 'node_exist': node_exist})
    V.check_probabilities(n_types, node_types, True, node_mask)
    V.check_probabilities(n_adj, adj, False)
    pair_mask = adj > 0
    V.check_probabilities(n_edge, edge_types, True, pair_mask)


def check_logits(adj: Tensor, edge: Tensor, node: Tensor,
                 names: Tuple[str, str, str] = ('adj_logits', 'edge_logits',
                                                'node_logits')) -> None:
    """GraphVAE decoder logits: finite floats of shapes ``[B, N, N]``,
    ``[B, N, N, R]`` and ``[B, N, T]``."""
    for name, t, nd in zip(names, (adj, edge, node), (3, 4, 3)):
        V.check_tensor(name, t, nd, 'float')
        V.check_finite(name, t)
    B, N, _ = adj.shape
    if adj.size(2) != N or tuple(edge.shape[:3]) != (B, N, N) or \
            tuple(node.shape[:2]) != (B, N):
        raise ValueError(
            f"logit shapes disagree: '{names[0]}' {tuple(adj.shape)}, "
            f"'{names[1]}' {tuple(edge.shape)}, '{names[2]}' "
            f"{tuple(node.shape)} (expected [B, N, N], [B, N, N, R], "
            f"[B, N, T])")


@V.renamed_arguments({'tau': 'temperature'})
def soft_graph_from_logits(adj_logits: Union[Tensor, Dict[str, Tensor]],
                           edge_logits: Optional[Tensor] = None,
                           node_logits: Optional[Tensor] = None,
                           temperature: float = 1.0, hard: bool = False,
                           gumbel: bool = True,
                           generator: Optional[torch.Generator] = None,
                           x: Optional[Tensor] = None) -> SoftGraph:
    r"""A :class:`SoftGraph` from GraphVAE decoder logits.

    Args:
        adj_logits: ``[B, N, N]`` adjacency logits whose diagonal is the
            node-existence logit, or a dict with keys ``'adj_logits'``,
            ``'edge_logits'``, ``'node_logits'``.
        edge_logits: ``[B, N, N, R]`` relation logits.
        node_logits: ``[B, N, T]`` type logits.
        temperature (float, optional): Softmax temperature (``tau=``
            still works). (default: :obj:`1.0`)
        hard (bool, optional): Straight-through one-hot types, thresholded
            adjacency (``> 0.5``) and ``node_mask = exist > 0.5``; gradients
            are those of the soft values. (default: :obj:`False`)
        gumbel (bool, optional): Gumbel-softmax (else plain softmax).
            (default: :obj:`True`)
        generator (torch.Generator, optional): Source of the Gumbel noise.
        x (Tensor, optional): ``[B, N, F]`` node features to attach.

    With ``e_i = sigmoid(diag_i)``: ``adj[i, j] = sigmoid(logit[i, j]) e_i
    e_j`` off the diagonal and 0 on it; ``e`` is kept as ``node_exist``.
    """
    if isinstance(adj_logits, dict):
        if edge_logits is not None or node_logits is not None:
            raise ValueError("pass the logits either as one dict or as "
                             "three tensors, not both")
        d = adj_logits
        missing = {'adj_logits', 'edge_logits', 'node_logits'} - set(d)
        if missing:
            raise ValueError(f"the logits dict is missing {sorted(missing)}")
        adj_logits, edge_logits = d['adj_logits'], d['edge_logits']
        node_logits = d['node_logits']
    check_logits(adj_logits, edge_logits, node_logits)
    B, N, _ = adj_logits.shape
    exist = torch.sigmoid(torch.diagonal(adj_logits, dim1=1, dim2=2))
    off_diag = 1 - torch.eye(N, device=adj_logits.device,
                             dtype=adj_logits.dtype)
    adj = torch.sigmoid(adj_logits) * off_diag
    adj = adj * exist.unsqueeze(-1) * exist.unsqueeze(-2)
    node_types = gumbel_softmax_sample(node_logits, temperature, hard, gumbel,
                                       generator)
    edge_types = gumbel_softmax_sample(edge_logits, temperature, hard, gumbel,
                                       generator)
    node_mask = None
    if hard:
        node_mask = exist > 0.5
        adj = (adj > 0.5).to(adj) - adj.detach() + adj
    return SoftGraph(node_types, adj, edge_types, node_mask, x, exist)
