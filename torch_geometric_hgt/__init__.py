"""Fast, exact Heterogeneous Graph Transformer layers for PyTorch Geometric."""
from torch_geometric_hgt.params import HGTParameters, RelTemporalEncoding
from torch_geometric_hgt.conv import LoopHGTConv, VectorizedHGTConv
from torch_geometric_hgt.dense import (DifferentiableDenseHGTConv,
                                       LoopDifferentiableDenseHGTConv)
from torch_geometric_hgt.models import (HGT, DifferentiableHGT,
                                        OptimizedDifferentiableHGT)
from torch_geometric_hgt.soft_graph import (SoftGraph, gumbel_softmax,
                                            soft_graph_from_logits)
from torch_geometric_hgt.convert import (convert_graphvae_to_differentiable,
                                         create_differentiable_hgt_data)

__version__ = '0.1.0'

__all__ = [
    'HGTParameters',
    'RelTemporalEncoding',
    'LoopHGTConv',
    'VectorizedHGTConv',
    'HGT',
    'DifferentiableDenseHGTConv',
    'LoopDifferentiableDenseHGTConv',
    'DifferentiableHGT',
    'OptimizedDifferentiableHGT',
    'SoftGraph',
    'gumbel_softmax',
    'soft_graph_from_logits',
    'convert_graphvae_to_differentiable',
    'create_differentiable_hgt_data',
]
