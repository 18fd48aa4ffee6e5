from torch_geometric_hgt.conv.loop import LoopHGTConv
from torch_geometric_hgt.conv.vectorized import VectorizedHGTConv
from torch_geometric_hgt.conv.ultrafast import UltraFastHGTConv
from torch_geometric_hgt.conv.memory_efficient import MemoryEfficientHGTConv
from torch_geometric_hgt.conv.hetero import HGTConv

#: name -> sparse layer class, as chosen by ``HGT(conv=...)``
CONVS = {
    'loop': LoopHGTConv,
    'vectorized': VectorizedHGTConv,
    'ultrafast': UltraFastHGTConv,
    'memory_efficient': MemoryEfficientHGTConv,
}

__all__ = [
    'LoopHGTConv',
    'VectorizedHGTConv',
    'UltraFastHGTConv',
    'MemoryEfficientHGTConv',
    'HGTConv',
    'CONVS',
]
