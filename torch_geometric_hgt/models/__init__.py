"""Model stacks over the layers: sparse graphs (:class:`HGT`) and soft dense
graphs (:class:`DenseHGT`, :class:`DifferentiableHGT`)."""
from torch_geometric_hgt.models.hgt import HGT
from torch_geometric_hgt.models.soft import (DenseHGT, DifferentiableHGT,
                                             OptimizedDifferentiableHGT)

__all__ = ['HGT', 'DenseHGT', 'DifferentiableHGT',
           'OptimizedDifferentiableHGT']
