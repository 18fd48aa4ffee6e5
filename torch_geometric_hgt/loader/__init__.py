"""PyG's loaders over our samplers: ``NeighborLoader``,
``LinkNeighborLoader`` and ``HGTLoader`` take PyG's arguments and give
PyG's batches without pyg-lib or torch-sparse; ``LinkHGTLoader`` samples
link-level mini-batches by HGSampling; ``RelativeEdgeTime`` gives
temporal batches the edge times ``use_RTE`` layers take."""
from torch_geometric_hgt.loader.hgt_loader import HGTLoader, LinkHGTLoader
from torch_geometric_hgt.loader.link_neighbor_loader import \
    LinkNeighborLoader
from torch_geometric_hgt.loader.neighbor_loader import NeighborLoader
from torch_geometric_hgt.loader.transforms import RelativeEdgeTime

__all__ = ['NeighborLoader', 'LinkNeighborLoader', 'HGTLoader',
           'LinkHGTLoader', 'RelativeEdgeTime']
