"""Converters between GraphVAE outputs, soft dense graphs and PyG batches."""
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_geometric_hgt import validation as V
from torch_geometric_hgt.soft_graph import gumbel_softmax

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
    for name, t, nd in (('adjacency logits', adj, 3),
                        ('edge logits', edge, 4), ('node logits', node, 3)):
        V.check_tensor(name, t, nd, 'float')
        V.check_finite(name, t)
    if tuple(edge.shape[:3]) != tuple(adj.shape) or \
            tuple(node.shape[:2]) != tuple(adj.shape[:2]):
        raise ValueError(f"decoder shapes disagree: adjacency "
                         f"{tuple(adj.shape)}, edges {tuple(edge.shape)}, "
                         f"nodes {tuple(node.shape)}")
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
        'edge_types': gumbel_softmax(edge, temperature, hard,
                                     use_gumbel_softmax, generator),
        'node_types': gumbel_softmax(node, temperature, hard,
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
            raise ValueError(f"'family_features' must have {data['batch_size']}"
                             f" rows, one per family "
                             f"(got {family_features.size(0)})")
    data['family_features'] = family_features
    return data
