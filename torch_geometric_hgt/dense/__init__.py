from torch_geometric_hgt.dense.legacy import (DifferentiableDenseHGTConv,
                                              LoopDifferentiableDenseHGTConv)

__all__ = ['DifferentiableDenseHGTConv', 'LoopDifferentiableDenseHGTConv']
