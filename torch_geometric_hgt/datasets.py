"""Synthetic heterogeneous graphs for examples, tests and benchmarks."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

#: ogbn-mag's node counts (OGB's statistics)
MAG_NODES: Dict[str, int] = {
    'paper': 736_389, 'author': 1_134_649, 'institution': 8_740,
    'field_of_study': 59_965}

#: ogbn-mag's edge counts; :func:`mag_like` adds each type's reverse
MAG_EDGES: Dict[Tuple[str, str, str], int] = {
    ('author', 'writes', 'paper'): 7_145_660,
    ('paper', 'cites', 'paper'): 5_416_271,
    ('paper', 'has_topic', 'field_of_study'): 7_505_078,
    ('author', 'affiliated_with', 'institution'): 1_043_998}


def power_law_nodes(num_nodes: int, num: int, skew: float,
                    generator: torch.Generator) -> Tensor:
    """``num`` node ids in ``[0, num_nodes)``; id ``i`` of a hidden random
    order is drawn with density ~ ``i^(1 / skew - 1)``, so degrees follow
    a power law for ``skew > 1``."""
    rank = (torch.rand(num, generator=generator) ** skew * num_nodes).long()
    return torch.randperm(num_nodes, generator=generator)[rank]


def mag_like(scale: float = 0.01, channels: int = 128,
             num_classes: int = 16, homophily: float = 0.8,
             skew: float = 2.0, seed: int = 0,
             edge_scale: Optional[float] = None) -> HeteroData:
    r"""A random graph with ogbn-mag's node and edge types at ``scale`` of
    its counts, every edge type with its reverse (``rev_<relation>``),
    power-law degrees, and a paper classification task like ogbn-mag's
    venue prediction.

    Papers carry ``y`` (one of ``num_classes``), ``x`` (the class's
    centroid plus noise of the same scale: informative, not decisive) and
    ``year`` (2010-2019); a ``homophily`` share of citations stays inside
    a class, so neighbours add evidence. Other node types get random
    ``x``, as a learned or averaged embedding would give them.

    Args:
        scale (float, optional): Fraction of ogbn-mag's node and edge
            counts. (default: :obj:`0.01`)
        channels (int, optional): Feature size. (default: :obj:`128`)
        num_classes (int, optional): Paper classes. (default: :obj:`16`)
        homophily (float, optional): Share of citations within a class.
            (default: :obj:`0.8`)
        skew (float, optional): Power-law skew of edge endpoints (1:
            uniform). (default: :obj:`2.0`)
        seed (int, optional): Random seed. (default: :obj:`0`)
        edge_scale (float, optional): Fraction of ogbn-mag's edge counts,
            if not ``scale``. (default: :obj:`None`)
    """
    if not scale > 0:
        raise ValueError(f"'scale' must be positive (got {scale})")
    g = torch.Generator().manual_seed(seed)
    n = {t: max(1, round(c * scale)) for t, c in MAG_NODES.items()}
    data = HeteroData()
    y = torch.randint(0, num_classes, (n['paper'], ), generator=g)
    centroids = torch.randn(num_classes, channels, generator=g)
    data['paper'].x = centroids[y] + torch.randn(n['paper'], channels,
                                                 generator=g)
    data['paper'].y = y
    data['paper'].year = torch.randint(2010, 2020, (n['paper'], ),
                                       generator=g)
    for t in ('author', 'institution', 'field_of_study'):
        data[t].x = torch.randn(n[t], channels, generator=g)
    by_class = y.argsort()
    start = torch.bincount(y, minlength=num_classes).cumsum(0) - \
        torch.bincount(y, minlength=num_classes)
    size = torch.bincount(y, minlength=num_classes)
    edge_scale = scale if edge_scale is None else edge_scale
    for (s, r, t), c in MAG_EDGES.items():
        e = max(1, round(c * edge_scale))
        src = power_law_nodes(n[s], e, skew, g)
        dst = power_law_nodes(n[t], e, skew, g)
        if r == 'cites':
            same = torch.rand(e, generator=g) < homophily
            cls = y[src[same]]
            pick = (torch.rand(int(same.sum()), generator=g) *
                    size[cls]).long()
            dst[same] = by_class[start[cls] + pick]
        data[s, r, t].edge_index = torch.stack([src, dst])
        data[t, f'rev_{r}', s].edge_index = torch.stack([dst, src])
    return data
