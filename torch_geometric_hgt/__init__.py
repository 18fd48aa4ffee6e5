"""Fast, exact Heterogeneous Graph Transformer layers for PyTorch Geometric."""
from torch_geometric_hgt.cpu import keep_freed_memory
from torch_geometric_hgt.params import HGTParameters, RelTemporalEncoding
from torch_geometric_hgt.conv import (HGTConv, LoopHGTConv,
                                      MemoryEfficientHGTConv,
                                      UltraFastHGTConv, VectorizedHGTConv)
from torch_geometric_hgt.dense import (DenseHGTConv, LoopDenseHGTConv,
                                       DifferentiableDenseHGTConv,
                                       LoopDifferentiableDenseHGTConv)
from torch_geometric_hgt.models import (HGT, DenseHGT, DifferentiableHGT,
                                        OptimizedDifferentiableHGT)
from torch_geometric_hgt.soft_graph import (  # noqa: F401 (deprecated name)
    SoftGraph, gumbel_softmax,
    gumbel_softmax_sample, soft_graph_from_logits)
from torch_geometric_hgt.convert import (batch_to_dense, dense_to_batch,
                                         dense_to_hetero,
                                         convert_graphvae_to_differentiable,
                                         create_differentiable_hgt_data)

__version__ = '0.1.0'

__all__ = [
    'HGTConv',
    'HGTParameters',
    'RelTemporalEncoding',
    'LoopHGTConv',
    'VectorizedHGTConv',
    'UltraFastHGTConv',
    'MemoryEfficientHGTConv',
    'HGT',
    'DenseHGTConv',
    'LoopDenseHGTConv',
    'DenseHGT',
    'DifferentiableDenseHGTConv',
    'LoopDifferentiableDenseHGTConv',
    'DifferentiableHGT',
    'OptimizedDifferentiableHGT',
    'SoftGraph',
    'gumbel_softmax_sample',
    'soft_graph_from_logits',
    'dense_to_batch',
    'batch_to_dense',
    'dense_to_hetero',
    'convert_graphvae_to_differentiable',
    'create_differentiable_hgt_data',
    'keep_freed_memory',
]
