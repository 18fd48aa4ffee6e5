from torch_geometric_hgt.conv.loop import LoopHGTConv
from torch_geometric_hgt.conv.vectorized import VectorizedHGTConv

#: name -> sparse layer class, as chosen by ``HGT(conv=...)``
CONVS = {
    'loop': LoopHGTConv,
    'vectorized': VectorizedHGTConv,
}

__all__ = ['LoopHGTConv', 'VectorizedHGTConv', 'CONVS']
