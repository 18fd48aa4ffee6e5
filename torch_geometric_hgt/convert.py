"""Converters between GraphVAE outputs, soft dense graphs and PyG batches."""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data, HeteroData
from torch_geometric.utils import to_dense_batch

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.soft_graph import (SoftGraph, check_logits,
                                            gumbel_softmax_sample)

DecoderOutput = Union[object, Tuple[Tensor, Tensor, Tensor]]


def decoder_logits(decoder: DecoderOutput) -> Tuple[Tensor, Tensor, Tensor]:
    """``(adj_logits [B, N, N], edge_logits [B, N, N, R], node_logits
    [B, N, T])`` from a GraphVAE decoder (``_tilde_structure`` with
    ``adj_matrices_special_diag``, ``edge_atr_tensors``,
    ``node_atr_matrices``) or a tuple of those three tensors."""
    if isinstance(decoder, (tuple, list)):
        if len(decoder) != 3:
            raise ValueError(f"'decoder' as a tuple must hold 3 tensors "
                             f"(got {len(decoder)})")
        adj, edge, node = decoder
    else:
        tilde = getattr(decoder, '_tilde_structure', None)
        if tilde is None:
            raise TypeError("'decoder' must be a (adj, edge, node) tuple or "
                            "have a '_tilde_structure' attribute")
        adj, edge = tilde.adj_matrices_special_diag, tilde.edge_atr_tensors
        node = tilde.node_atr_matrices
    check_logits(adj, edge, node, ('adjacency logits', 'edge logits',
                                   'node logits'))
    return adj, edge, node


def convert_graphvae_to_differentiable(
        decoder: DecoderOutput, use_gumbel_softmax: bool = True,
        temperature: float = 1.0, hard: bool = False,
        generator: Optional[torch.Generator] = None) -> Dict[str, object]:
    """The users' converter: ``adj_matrix = sigmoid(adjacency logits)``,
    ``edge_types`` and ``node_types`` by Gumbel-softmax (or softmax) at
    ``temperature`` (straight-through one-hot with ``hard``), noise from
    ``generator``. Returns the dict ``DifferentiableHGT`` reads (keys
    ``adj_matrix``, ``edge_types``, ``node_types``, ``family_features``,
    ``batch_size``, ``max_nodes``)."""
    adj, edge, node = decoder_logits(decoder)
    return {
        'adj_matrix': torch.sigmoid(adj),
        'edge_types': gumbel_softmax_sample(edge, temperature, hard,
                                            use_gumbel_softmax, generator),
        'node_types': gumbel_softmax_sample(node, temperature, hard,
                                            use_gumbel_softmax, generator),
        'family_features': None,
        'batch_size': adj.size(0),
        'max_nodes': adj.size(1),
    }


def create_differentiable_hgt_data(
        decoder: DecoderOutput, family_features: Optional[Tensor] = None,
        temperature: float = 1.0, hard: bool = False,
        generator: Optional[torch.Generator] = None) -> Dict[str, object]:
    """:func:`convert_graphvae_to_differentiable` with Gumbel-softmax and
    the per-family features ``[B, F]`` attached."""
    data = convert_graphvae_to_differentiable(decoder, True, temperature,
                                              hard, generator)
    if family_features is not None:
        V.check_tensor('family_features', family_features, 2, 'float')
        if family_features.size(0) != data['batch_size']:
            raise ValueError(f"'family_features' must have "
                             f"{data['batch_size']} rows, one per family "
                             f"(got {family_features.size(0)})")
    data['family_features'] = family_features
    return data


def _hard_choices(graph: SoftGraph, threshold: float, sample: bool,
                  generator: Optional[torch.Generator]):
    """Node types ``[B, N]``, edge existence ``[B, N, N]`` and relations
    ``[B, N, N]``: argmax / threshold, or drawn (categorical, Bernoulli)."""
    P, A, E = graph.node_types, graph.adj, graph.edge_types
    if not sample:
        return P.argmax(-1), A > threshold, E.argmax(-1)

    def categorical(probs):
        flat = probs.detach().reshape(-1, probs.size(-1)).float()
        ok = flat.sum(-1, keepdim=True) > 0  # all-zero rows (padding)
        flat = torch.where(ok, flat, torch.ones_like(flat))
        draw = torch.multinomial(flat, 1, generator=generator)
        return draw.view(probs.shape[:-1])
    u = torch.rand(A.shape, generator=generator, device=A.device)
    return categorical(P), u < A.detach(), categorical(E)


def dense_to_batch(graph: Union[SoftGraph, Dict[str, Tensor]],
                   threshold: float = 0.5, sample: bool = False,
                   generator: Optional[torch.Generator] = None,
                   family_features: Optional[Tensor] = None) -> Batch:
    r"""A PyG :class:`~torch_geometric.data.Batch` (one graph per family)
    from a soft graph, without a Python loop over families or edges.

    Args:
        graph: a :class:`SoftGraph` or the users' dict.
        threshold (float, optional): Edge ``i -> j`` kept where
            ``adj[b, i, j] > threshold``. (default: :obj:`0.5`)
        sample (bool, optional): Draw Bernoulli edges and categorical types
            and relations instead (inference-time sampling).
            (default: :obj:`False`)
        generator (torch.Generator, optional): Randomness for ``sample``.
        family_features (Tensor, optional): ``[B, F]``: each family gets one
            more node, of type id ``T``, with these features, and edges of
            relation id ``R`` (``belongs_to``) from it to every member.

    Padded nodes (``node_mask`` False) are dropped, with their edges. Fields:
    ``x`` (the graph's ``x``, else one-hot node types), ``node_type``,
    ``edge_index`` (row 0 source), ``edge_type``, ``edge_weight`` (the
    adjacency probability of each kept edge; 1 for ``belongs_to``),
    ``batch``, ``ptr``.
    """
    graph = SoftGraph.from_any(graph)
    V.check_unit_interval('threshold', threshold)
    B, N, T = graph.node_types.shape
    R = graph.edge_types.size(-1)
    device = graph.adj.device
    node_type, edge_on, rel = _hard_choices(graph, threshold, sample,
                                            generator)
    mask = graph.node_mask if graph.node_mask is not None else \
        torch.ones(B, N, dtype=torch.bool, device=device)
    with_family = family_features is not None
    x = graph.x
    if x is None:
        x = F.one_hot(node_type, T + int(with_family)).to(graph.adj.dtype)
    if with_family:
        V.check_tensor('family_features', family_features, 2, 'float')
        if family_features.size(0) != B or \
                family_features.size(1) != x.size(-1):
            raise ValueError(
                f"'family_features' must have shape [B, F] = [{B}, "
                f"{x.size(-1)}] (F = the node feature size) "
                f"(got {tuple(family_features.shape)})")

    kept = mask.sum(1)  # members per family
    sizes = kept + int(with_family)
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    rank = mask.long().cumsum(1) - 1  # position among the kept members
    new_id = ptr[:-1].unsqueeze(1) + rank  # [B, N], valid where mask

    edge_on = edge_on & mask.unsqueeze(2) & mask.unsqueeze(1)
    b, i, j = edge_on.nonzero(as_tuple=True)  # sorted by family
    edge_index = torch.stack([new_id[b, i], new_id[b, j]])
    edge_type = rel[b, i, j]
    edge_weight = graph.adj[b, i, j]
    xs, types, batch_vec = x[mask], node_type[mask], \
        torch.arange(B, device=device).repeat_interleave(kept)
    counts = edge_on.sum((1, 2))
    if with_family:
        fam_id = ptr[1:] - 1
        mb, mi = mask.nonzero(as_tuple=True)
        fam_edges = torch.stack([fam_id[mb], new_id[mb, mi]])
        # members first, then the family node, family by family
        order_n = torch.argsort(torch.cat([new_id[mask], fam_id]))
        xs = torch.cat([xs, family_features.to(xs.dtype)])[order_n]
        types = torch.cat([types, types.new_full((B, ), T)])[order_n]
        batch_vec = torch.cat([batch_vec,
                               torch.arange(B, device=device)])[order_n]
        eb = torch.cat([b, mb])
        order_e = torch.argsort(eb, stable=True)
        edge_index = torch.cat([edge_index, fam_edges], 1)[:, order_e]
        edge_type = torch.cat([edge_type,
                               edge_type.new_full((mb.numel(), ), R)])[order_e]
        edge_weight = torch.cat([edge_weight,
                                 edge_weight.new_ones(mb.numel())])[order_e]
        counts = counts + kept
    eptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    out = Batch(x=xs, node_type=types, edge_index=edge_index,
                edge_type=edge_type, edge_weight=edge_weight,
                batch=batch_vec, ptr=ptr)
    zeros = torch.zeros(B, dtype=torch.long)
    out._num_graphs = B
    out._slice_dict = {'x': ptr.cpu(), 'node_type': ptr.cpu(),
                       'edge_index': eptr.cpu(), 'edge_type': eptr.cpu(),
                       'edge_weight': eptr.cpu()}
    out._inc_dict = {'x': zeros, 'node_type': zeros,
                     'edge_index': ptr[:-1].cpu(), 'edge_type': zeros,
                     'edge_weight': zeros}
    return out


@V.renamed_arguments({'num_types': 'num_node_types'})
def batch_to_dense(batch: Batch, num_node_types: int, num_relations: int,
                   max_num_nodes: Optional[int] = None) -> SoftGraph:
    """A :class:`SoftGraph` with one-hot types and relations from a PyG
    batch (``node_type``, ``edge_index``, ``edge_type``, optional ``x``,
    ``edge_weight``, ``batch``). The adjacency is ``edge_weight`` where
    given, else 1. Exact inverse of :func:`dense_to_batch` for hard graphs
    (without family nodes). ``max_num_nodes`` (default: the largest graph)
    may not be smaller than the largest graph: no node is dropped."""
    for name in ('node_type', 'edge_index', 'edge_type'):
        if getattr(batch, name, None) is None:
            raise ValueError(f"'batch' has no '{name}'")
    V.check_range('batch.node_type', batch.node_type, num_node_types,
                  'node type ids')
    V.check_range('batch.edge_type', batch.edge_type, num_relations,
                  'relation ids')
    V.check_range('batch.edge_index', batch.edge_index,
                  batch.node_type.numel(), 'node indices')
    vec = batch.batch if getattr(batch, 'batch', None) is not None else \
        batch.node_type.new_zeros(batch.node_type.numel())
    if max_num_nodes is not None and vec.numel():
        largest = int(torch.bincount(vec).max())
        if max_num_nodes < largest:
            raise ValueError(f"'max_num_nodes' ({max_num_nodes}) is smaller "
                             f"than the largest graph ({largest} nodes)")
    # a Batch counts its graphs without nodes, which vec cannot show
    size = getattr(batch, 'num_graphs', None)
    types, mask = to_dense_batch(
        F.one_hot(batch.node_type, num_node_types).float(), vec,
        max_num_nodes=max_num_nodes, batch_size=size)
    B, N = mask.shape
    ptr = torch.cat([vec.new_zeros(1), mask.sum(1).cumsum(0)])
    src, dst = batch.edge_index
    g = vec[src]
    if bool((g != vec[dst]).any()):
        raise ValueError("'batch.edge_index' joins nodes of different "
                         "graphs")
    i, j = src - ptr[g], dst - ptr[g]
    w = getattr(batch, 'edge_weight', None)
    w = torch.ones(src.numel(), device=src.device) if w is None else w.float()
    adj = types.new_zeros(B, N, N).index_put_((g, i, j), w)
    rel = types.new_zeros(B, N, N, num_relations)
    rel[g, i, j] = F.one_hot(batch.edge_type, num_relations).float()
    x = None
    if getattr(batch, 'x', None) is not None:
        x, _ = to_dense_batch(batch.x, vec, max_num_nodes=max_num_nodes,
                              batch_size=size)
    return SoftGraph(types, adj, rel, mask, x)


def dense_to_hetero(graph: Union[SoftGraph, Dict[str, Tensor]],
                    node_type_names: Sequence[str],
                    relation_names: Sequence[str], threshold: float = 0.5,
                    sample: bool = False,
                    generator: Optional[torch.Generator] = None
                    ) -> HeteroData:
    """A batched :class:`~torch_geometric.data.HeteroData` (all families in
    one object, ``batch`` per node type) with named node types and edge
    types ``(src_type, relation, dst_type)`` for the combinations that
    occur, for PyG's own heterogeneous models. Choices of edges and types as
    in :func:`dense_to_batch`."""
    graph = SoftGraph.from_any(graph)
    T, R = graph.node_types.size(-1), graph.edge_types.size(-1)
    if len(node_type_names) != T or len(relation_names) != R:
        raise ValueError(f"need {T} node type names and {R} relation names "
                         f"(got {len(node_type_names)} and "
                         f"{len(relation_names)})")
    for what, names in (('node_type_names', node_type_names),
                        ('relation_names', relation_names)):
        if len(set(names)) != len(names):
            raise ValueError(f"'{what}' must be distinct (got "
                             f"{list(names)})")
    flat = dense_to_batch(graph, threshold, sample, generator)
    src, dst = flat.edge_index
    # one id per (source type, relation, destination type) that occurs
    key = (flat.node_type[src] * R + flat.edge_type) * T + \
        flat.node_type[dst]
    keys, edge_type = torch.unique(key, return_inverse=True)
    edge_type_names = [(node_type_names[k // (R * T)],
                        relation_names[k // T % R], node_type_names[k % T])
                       for k in keys.tolist()]
    homogeneous = Data(x=flat.x, batch=flat.batch,
                       edge_index=flat.edge_index,
                       edge_weight=flat.edge_weight)
    return homogeneous.to_heterogeneous(flat.node_type, edge_type,
                                        list(node_type_names),
                                        edge_type_names)
