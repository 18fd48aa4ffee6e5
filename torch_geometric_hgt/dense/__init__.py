from torch_geometric_hgt.dense.conv import DenseHGTConv
from torch_geometric_hgt.dense.loop import LoopDenseHGTConv
from torch_geometric_hgt.dense.legacy import (DifferentiableDenseHGTConv,
                                              LoopDifferentiableDenseHGTConv)

__all__ = [
    'DenseHGTConv',
    'LoopDenseHGTConv',
    'DifferentiableDenseHGTConv',
    'LoopDifferentiableDenseHGTConv',
]
