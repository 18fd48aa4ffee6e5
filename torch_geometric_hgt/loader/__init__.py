"""Mini-batch loaders for heterogeneous graphs with PyG's arguments and
output, in plain PyTorch (no pyg-lib or torch-sparse needed)."""
from torch_geometric_hgt.loader.hgt_loader import HGTLoader
from torch_geometric_hgt.loader.neighbor_loader import NeighborLoader

__all__ = ['HGTLoader', 'NeighborLoader']
