"""Where PyG's explainers meet :class:`~torch_geometric_hgt.HGTConv`."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import ModuleDict
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import EdgeType

#: each edge type of a call: ``(edge_index [2, E], edge_time [E] or None)``
Edges = Dict[EdgeType, Tuple[Tensor, Optional[Tensor]]]


class EdgeMaskSlot(MessagePassing):
    """Where PyG's explainers put one edge type's mask:
    :func:`torch_geometric.explain.algorithm.utils.set_hetero_masks` sets
    masks on the ``MessagePassing`` modules of a ``ModuleDict`` keyed by
    edge type. The layer reads the slot; nothing propagates through it."""

    def mask(self, num_edges: int, name: str) -> Optional[Tensor]:
        """The mask as PyG's ``explain_message`` applies it (sigmoid when
        asked), or :obj:`None` when not explaining."""
        if not self.explain:
            return None
        mask = self._edge_mask
        if mask is None:
            raise ValueError(f"explaining {name}, but no edge mask is set "
                             f"on it")
        if mask.shape != (num_edges, ):
            raise ValueError(f"the edge mask of {name} has shape "
                             f"{list(mask.shape)}, expected [{num_edges}]")
        return mask.sigmoid() if self._apply_sigmoid else mask


class EdgeMasks(ModuleDict):
    """An :class:`EdgeMaskSlot` per edge type, keyed ``'src__rel__dst'``
    as PyG's explainers look them up (edge types whose key holds a dot,
    which a ``ModuleDict`` refuses, cannot be explained)."""
    def __init__(self, edge_types):
        super().__init__({'__'.join(et): EdgeMaskSlot() for et in edge_types
                          if '.' not in '__'.join(et)})

    def slot(self, et: EdgeType) -> Optional[EdgeMaskSlot]:
        key = '__'.join(et)
        return self[key] if key in self else None

    def mask_of(self, edges: Edges) -> Optional[Tensor]:
        """The explanation mask of every edge of the call, in ``edges``'
        order (ones for edge types not explained), or :obj:`None` when no
        edge type is explained."""
        masks = []
        for et, (ei, _) in edges.items():
            slot = self.slot(et)
            masks.append(None if slot is None else
                         slot.mask(ei.size(1), f'edge type {et}'))
        if all(m is None for m in masks):
            return None
        ref = next(m for m in masks if m is not None)
        return torch.cat([ref.new_ones(ei.size(1)) if m is None else m
                          for m, (ei, _) in zip(masks, edges.values())])

    def report(self, edges: Edges, alpha: Tuple[Tensor, ...]) -> None:
        """Hands each edge type's attention to its slot's message forward
        hooks as ``msg_kwargs['alpha']`` (what ``AttentionExplainer``
        reads), since no ``propagate`` runs them; without PyG's
        ``_message_forward_hooks`` nothing is reported."""
        for (et, (ei, _)), a in zip(edges.items(), alpha):
            slot = self.slot(et)
            hooks = getattr(slot, '_message_forward_hooks', None)
            for hook in list(hooks.values()) if hooks else ():
                hook(slot, ({'alpha': a, 'edge_index': ei}, ), a)
