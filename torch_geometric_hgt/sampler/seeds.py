"""What both samplers do around their draws: check and place the seeds,
give each loader worker its own generator, and hand the result back in
PyG's sampler output types."""
from typing import Dict, NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch_geometric.sampler import HeteroSamplerOutput, SamplerOutput
from torch_geometric.typing import NodeType

from torch_geometric_hgt.sampler.graph import EDGE, NODE, Graph


class Seeds(NamedTuple):
    """Seed ids per node type on the graph's device, each seed's example
    (``batch``: numbered across the types, in order), and each example's
    seed time (temporal sampling only)."""
    node: Dict[NodeType, Tensor]
    batch: Dict[NodeType, Tensor]
    root_time: Optional[Tensor]


def check_seeds(graph: Graph, seed: Union[Tensor, Dict[NodeType, Tensor]],
                seed_time: Optional[Union[Tensor, Dict[NodeType, Tensor]]],
                is_hetero: bool) -> Seeds:
    if not is_hetero:
        seed = {NODE: seed}
        seed_time = None if seed_time is None else {NODE: seed_time}
    node, batch, times = {}, {}, []
    offset = 0
    for nt, ids in seed.items():
        if nt not in graph.num_nodes:
            raise ValueError(f"seed nodes of type {nt!r}, which is not a "
                             f"node type of the graph "
                             f"{list(graph.num_nodes)}")
        if not isinstance(ids, Tensor) or ids.dim() != 1 or \
                ids.is_floating_point() or ids.dtype == torch.bool:
            raise TypeError(f"seed nodes of type {nt!r} must be a 1-d "
                            f"integer tensor (got {ids!r})")
        ids = ids.to(graph.device, torch.long)
        n = graph.num_nodes[nt]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise ValueError(f"seed nodes of type {nt!r} out of range: the "
                             f"graph has {n} such nodes")
        node[nt] = ids
        batch[nt] = torch.arange(offset, offset + ids.numel(),
                                 device=graph.device)
        offset += ids.numel()
        if graph.temporal:
            if seed_time is not None and nt in seed_time:
                t = seed_time[nt].to(graph.device)
                if t.shape != ids.shape:
                    raise ValueError(f"seed times of type {nt!r} must have "
                                     f"one entry per seed ({ids.numel()}; "
                                     f"got {list(t.shape)})")
            elif nt in graph.node_time:
                t = graph.node_time[nt].index_select(0, ids)
            else:
                raise ValueError(f"temporal sampling from seeds of type "
                                 f"{nt!r}, which has no 'time_attr': give "
                                 f"their times ('input_time' or "
                                 f"'edge_label_time')")
            times.append(t)
    root_time = torch.cat(times) if times else None
    return Seeds(node, batch, root_time)


def hetero_output(out: dict, is_hetero: bool
                  ) -> Union[SamplerOutput, HeteroSamplerOutput]:
    """PyG's output type of a sampler's dict of fields; a homogeneous
    graph's single types unwrapped."""
    if is_hetero:
        return HeteroSamplerOutput(**out)
    batch, edges = out['batch'], out['num_sampled_edges']
    return SamplerOutput(
        node=out['node'][NODE], row=out['row'][EDGE], col=out['col'][EDGE],
        edge=out['edge'][EDGE], batch=None if batch is None else batch[NODE],
        num_sampled_nodes=out['num_sampled_nodes'][NODE],
        num_sampled_edges=None if edges is None else edges[EDGE])


def check_generator(generator: Optional[torch.Generator],
                    graph: Graph) -> Optional[torch.Generator]:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"'generator' must be a torch.Generator (got "
                        f"{generator!r})")
    if generator.device.type != graph.device.type:
        raise ValueError(f"'generator' is on {generator.device} but the "
                         f"graph's edges are on {graph.device}: sampling "
                         f"draws where the edges are")
    return generator


class WorkerGenerator:
    """A sampler's generator, or in a loader worker a generator of that
    worker's own, seeded from the worker's seed, so workers draw
    different numbers and a seeded run repeats."""

    def __init__(self, generator: Optional[torch.Generator]):
        self.generator = generator
        self.worker: Optional[int] = None
        self.own: Optional[torch.Generator] = None

    def __call__(self) -> Optional[torch.Generator]:
        info = torch.utils.data.get_worker_info()
        if self.generator is None or info is None:
            # without a generator, DataLoader seeds each worker's global one
            return self.generator
        if self.worker != info.id:
            self.own = torch.Generator(self.generator.device).manual_seed(
                info.seed)
            self.worker = info.id
        return self.own
