"""HGT as functions on tensors: :func:`hgt_attention` (the edge phase, one
dispatcher over the backends) and :func:`hgt_update` (the typed update)."""
from torch_geometric_hgt.functional.attention import hgt_attention
from torch_geometric_hgt.functional.dispatch import BACKENDS, select_backend
from torch_geometric_hgt.functional.softmax import segment_softmax
from torch_geometric_hgt.functional.update import (UpdateWeights,
                                                   hgt_update,
                                                   hgt_update_soft)

__all__ = [
    'hgt_attention',
    'hgt_update',
    'hgt_update_soft',
    'UpdateWeights',
    'segment_softmax',
    'select_backend',
    'BACKENDS',
]
