"""Fast, exact Heterogeneous Graph Transformer layers for PyTorch Geometric."""
from torch_geometric_hgt.params import HGTParameters, RelTemporalEncoding
from torch_geometric_hgt.conv import LoopHGTConv, VectorizedHGTConv

__version__ = '0.1.0'

__all__ = [
    'HGTParameters',
    'RelTemporalEncoding',
    'LoopHGTConv',
    'VectorizedHGTConv',
]
