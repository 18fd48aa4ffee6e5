"""What both loaders share: the seed batches (shuffled by a generator, one
random seed per batch, so a batch samples the same whichever worker takes
it), argument checks, and the mini-batch as PyG's loaders lay it out."""
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torch_geometric.data import HeteroData
from torch_geometric.typing import NodeType

from torch_geometric_hgt.loader.graph import Graph, graph_of
from torch_geometric_hgt.loader.sampling import Sample

InputNodes = Union[NodeType, Tuple[NodeType, Optional[Tensor]]]

#: DataLoader arguments the loaders set themselves
OWN_ARGS = ('collate_fn', 'sampler', 'batch_sampler', 'dataset')


class SeedBatches(Sampler):
    """Yields ``(positions, seed)``: ``batch_size`` positions into the
    input nodes (a fresh order per epoch where ``shuffle``) and a random
    seed for the batch's sampling, both drawn from ``generator`` (or from
    torch's global generator, so ``torch.manual_seed`` repeats a run)."""

    def __init__(self, num_inputs: int, batch_size: int, shuffle: bool,
                 drop_last: bool, generator: Optional[torch.Generator]):
        self.num_inputs = num_inputs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_inputs // self.batch_size
        return -(-self.num_inputs // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[Tensor, int]]:
        g = self.generator
        if g is None:
            g = torch.Generator().manual_seed(int(torch.empty(
                (), dtype=torch.int64).random_()))
        order = torch.randperm(self.num_inputs, generator=g) \
            if self.shuffle else torch.arange(self.num_inputs)
        for i in range(len(self)):
            seed = int(torch.randint(2**62, (), generator=g))
            yield order[i * self.batch_size:(i + 1) * self.batch_size], seed


class _Keys(Dataset):
    """Hands each ``(positions, seed)`` on to the collate function."""

    def __getitem__(self, key):
        return key


def check_data(data) -> None:
    if not isinstance(data, HeteroData):
        raise TypeError(f"'data' must be a HeteroData (got "
                        f"{type(data).__name__})")


def check_input_nodes(data: HeteroData, input_nodes: InputNodes
                      ) -> Tuple[NodeType, Tensor]:
    """``(node type, global ids)`` of the seeds, on the graph's device."""
    if isinstance(input_nodes, str):
        input_nodes = (input_nodes, None)
    if not (isinstance(input_nodes, (tuple, list)) and
            len(input_nodes) == 2 and isinstance(input_nodes[0], str)):
        raise TypeError(f"'input_nodes' must be a node type or (node type, "
                        f"indices or mask or None) (got {input_nodes!r})")
    nt, ids = input_nodes
    if nt not in data.node_types:
        raise ValueError(f"'input_nodes' names node type '{nt}', which is "
                         f"not in the graph {data.node_types}")
    n = int(data[nt].num_nodes or 0)
    device = edge_device(data)
    if ids is None:
        return nt, torch.arange(n, device=device)
    if not isinstance(ids, Tensor) or ids.dim() != 1:
        raise TypeError(f"'input_nodes' indices must be a 1-d tensor (got "
                        f"{ids!r})")
    if ids.dtype == torch.bool:
        if ids.numel() != n:
            raise ValueError(f"'input_nodes' mask has {ids.numel()} entries "
                             f"but '{nt}' has {n} nodes")
        return nt, ids.nonzero().view(-1).to(device)
    if ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"'input_nodes' indices must be integers (got "
                        f"{ids.dtype})")
    ids = ids.long().to(device)
    if ids.numel() and (ids.min() < 0 or ids.max() >= n):
        raise ValueError(f"'input_nodes' has an index out of range of "
                         f"'{nt}' ({n} nodes)")
    return nt, ids


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or \
            batch_size < 1:
        raise ValueError(f"'batch_size' must be a positive int (got "
                         f"{batch_size!r})")
    return batch_size


def check_sizes(name: str, sizes, least: int) -> list:
    """``sizes`` as a list of ints ``>= least``, or a clear error."""
    if not isinstance(sizes, (list, tuple)) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        raise TypeError(f"{name} must be a list of ints (got {sizes!r})")
    if any(s < least for s in sizes):
        raise ValueError(f"{name} must hold ints >= {least} (got "
                         f"{list(sizes)})")
    return list(sizes)


def sizes_per_type(name: str, sizes, types: list, least: int) -> dict:
    """``sizes`` (one list for every type, or a dict per type; types left
    out get zeros) as a list of ints ``>= least`` per type of ``types``,
    all of one length (the hops), or a clear error."""
    if not isinstance(sizes, dict):
        sizes = check_sizes(f"'{name}'", sizes, least)
        return {t: sizes for t in types}
    keys = {t: tuple(t) if isinstance(t, (tuple, list)) else t
            for t in sizes}
    unknown = [t for t in keys.values() if t not in types]
    if unknown:
        raise ValueError(f"'{name}' names types {unknown} that are not in "
                         f"the graph {types}")
    given = {keys[t]: check_sizes(f"{name}[{t!r}]", v, least)
             for t, v in sizes.items()}
    lengths = {len(v) for v in given.values()}
    if len(lengths) > 1:
        raise ValueError(f"'{name}' lists must all have one entry per hop "
                         f"(got lengths {sorted(lengths)})")
    hops = lengths.pop() if lengths else 0
    return {t: given.get(t, [0] * hops) for t in types}


def edge_device(data: HeteroData) -> torch.device:
    for et in data.edge_types:
        return data[et].edge_index.device
    return torch.device('cpu')


def to_hetero_data(data: HeteroData, sample: Sample, input_type: NodeType,
                   input_id: Tensor, time_attr: Optional[str],
                   per_hop: bool) -> HeteroData:
    """The mini-batch in PyG's layout: node attributes of the sampled nodes
    (``n_id``, seeds first), edge attributes of the sampled edges
    (``e_id``), ``input_id`` and ``batch_size`` on the input type; with
    ``time_attr``, ``seed_time`` on every node type and ``edge_time``
    (destination's seed time minus source time, ``>= 0``) on every edge
    type, the relative time that ``use_RTE`` layers take."""
    out = HeteroData()
    for nt in data.node_types:
        store, n_id = data[nt], sample.n_id[nt]
        for key, value in store.items():
            if isinstance(value, Tensor) and store.is_node_attr(key):
                out[nt][key] = value.index_select(0, n_id.to(value.device))
            elif not isinstance(value, Tensor):
                out[nt][key] = value
        out[nt].n_id = n_id
        out[nt].num_nodes = n_id.numel()
        if sample.seed_time is not None:
            out[nt].seed_time = sample.seed_time[nt]
        if per_hop:
            out[nt].num_sampled_nodes = sample.num_sampled_nodes[nt]
    for et in data.edge_types:
        store, e_id = data[et], sample.e_id[et]
        for key, value in store.items():
            if key == 'edge_index':
                continue
            if isinstance(value, Tensor) and store.is_edge_attr(key):
                out[et][key] = value.index_select(0, e_id.to(value.device))
            elif not isinstance(value, Tensor):
                out[et][key] = value
        ei = sample.edge_index[et]
        out[et].edge_index = ei
        out[et].e_id = e_id
        if sample.seed_time is not None:
            src_time = data[et[0]][time_attr].long()[
                sample.n_id[et[0]][ei[0]]]
            out[et].edge_time = sample.seed_time[et[2]][ei[1]] - src_time
        if per_hop:
            out[et].num_sampled_edges = sample.num_sampled_edges[et]
    out[input_type].input_id = input_id
    out[input_type].batch_size = input_id.numel()
    return out


class SeedLoader(DataLoader):
    """A :class:`torch.utils.data.DataLoader` over batches of seed nodes
    whose collate function samples a subgraph around each batch; a
    subclass defines :meth:`sample`."""

    #: whether batches carry ``num_sampled_nodes`` / ``num_sampled_edges``
    per_hop = False

    def __init__(self, data: HeteroData, input_nodes: InputNodes,
                 batch_size: int, shuffle: bool, drop_last: bool,
                 generator: Optional[torch.Generator],
                 time_attr: Optional[str], input_time: Optional[Tensor],
                 transform: Optional[Callable], **kwargs):
        check_data(data)
        for name in OWN_ARGS:
            if name in kwargs:
                raise TypeError(f"'{name}' is set by "
                                f"{type(self).__name__} itself")
        self.data = data
        self.input_type, self.input_nodes = check_input_nodes(data,
                                                              input_nodes)
        self.time_attr = time_attr
        self.graph: Graph = graph_of(data, time_attr)
        if input_time is not None:
            if time_attr is None:
                raise ValueError("'input_time' needs 'time_attr'")
            if input_time.shape != self.input_nodes.shape:
                raise ValueError(f"'input_time' must have one entry per "
                                 f"input node ({self.input_nodes.numel()}; "
                                 f"got {list(input_time.shape)})")
            input_time = input_time.long().to(self.input_nodes.device)
        self.input_time = input_time
        self.transform = transform
        batches = SeedBatches(self.input_nodes.numel(),
                              check_batch_size(batch_size), shuffle,
                              drop_last, generator)
        super().__init__(_Keys(), batch_size=None, sampler=batches,
                         collate_fn=self.collate, **kwargs)

    def sample(self, seeds: Tensor, seed_time: Optional[Tensor],
               generator: torch.Generator) -> Sample:
        """The subgraph around ``seeds`` (global ids of the input type,
        with their times for temporal sampling), drawn from
        ``generator``."""
        raise NotImplementedError

    def collate(self, key: Tuple[Tensor, int]) -> HeteroData:
        positions, seed = key
        device = self.input_nodes.device
        positions = positions.to(device)
        generator = torch.Generator(device=device).manual_seed(seed)
        seed_time = None if self.input_time is None else \
            self.input_time.index_select(0, positions)
        sample = self.sample(self.input_nodes.index_select(0, positions),
                             seed_time, generator)
        batch = to_hetero_data(self.data, sample, self.input_type,
                               positions, self.time_attr,
                               per_hop=self.per_hop)
        return batch if self.transform is None else self.transform(batch)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
