"""Samplers behind PyG's loaders, in plain PyTorch (no pyg-lib or
torch-sparse needed): :class:`NeighborSampler` for PyG's
:class:`~torch_geometric.loader.NeighborLoader` and
:class:`~torch_geometric.loader.LinkNeighborLoader`, and
:class:`HGTSampler` (HGSampling) for node- and link-level loaders."""
from torch_geometric_hgt.sampler.hgt_sampler import HGTSampler
from torch_geometric_hgt.sampler.neighbor_sampler import NeighborSampler

__all__ = ['NeighborSampler', 'HGTSampler']
