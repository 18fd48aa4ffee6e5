"""A graph kept on disk behind PyG's FeatureStore / GraphStore, sampled by
our NeighborSampler and trained with DistributedDataParallel.

    python examples/disk_graph.py --scale 0.1               # one process
    torchrun --nproc_per_node=2 examples/disk_graph.py      # two ranks
    python examples/disk_graph.py --smoke --world 2    # 2 ranks, 1 process

The first run writes an ogbn-mag-shaped graph (``mag_like``) as ``.npy``
files under ``--root``: one file per node attribute and one per edge type
(source and destination rows). ``NpyFeatureStore`` and ``NpyGraphStore``
implement PyG's ``FeatureStore`` and ``GraphStore`` over those files,
memory-mapped: a batch reads only its own nodes' feature rows from disk,
so the features never have to fit in memory. The sampler builds its
CSC from the stored edges once per process (16 bytes per edge plus 8 per
node in memory; the page cache holds the files' hot parts, shared by the
ranks). Each rank opens the stores, takes its shard of the training
papers and trains PyG's ``hgt_dblp.py``-style model under DDP (gloo), so
the gradients are averaged: two ranks give the same parameters as one
process averaging the same batches (``--world 2``).
"""
import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import EdgeAttr, FeatureStore, GraphStore, \
    TensorAttr

sys.path.insert(0, str(Path(__file__).parent))
from mag_minibatch import HGT, split  # noqa: E402

from torch_geometric_hgt.datasets import mag_like  # noqa: E402
from torch_geometric_hgt.loader import NeighborLoader  # noqa: E402
from torch_geometric_hgt.sampler import NeighborSampler  # noqa: E402


def _name(*parts) -> str:
    return '__'.join(str(p) for p in parts)


class NpyFeatureStore(FeatureStore):
    """Node attributes as memory-mapped ``.npy`` files, one per (node
    type, attribute): reading rows copies only those rows."""

    def __init__(self, root: str):
        super().__init__()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, attr: TensorAttr) -> Path:
        return self.root / f'{_name(attr.group_name, attr.attr_name)}.npy'

    def _put_tensor(self, tensor: Tensor, attr: TensorAttr) -> bool:
        if attr.index is not None:
            raise ValueError("NpyFeatureStore writes whole tensors only "
                             "(index=None)")
        np.save(self._path(attr), tensor.numpy())
        return True

    def _get_tensor(self, attr: TensorAttr) -> Optional[Tensor]:
        path = self._path(attr)
        if not path.exists():
            raise KeyError(f"no tensor stored for {attr}")
        array = np.load(path, mmap_mode='r')
        index = attr.index
        if index is None or (isinstance(index, slice) and
                             index == slice(None)):
            return torch.from_numpy(np.ascontiguousarray(array))
        return torch.from_numpy(array[np.asarray(index)])

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        path = self._path(attr)
        path.unlink(missing_ok=True)
        return True

    def _get_tensor_size(self, attr: TensorAttr) -> Tuple[int, ...]:
        return tuple(np.load(self._path(attr), mmap_mode='r').shape)

    def get_all_tensor_attrs(self) -> List[TensorAttr]:
        out = []
        for path in sorted(self.root.glob('*.npy')):
            group, attr = path.stem.split('__')
            out.append(TensorAttr(group, attr))
        return out


class NpyGraphStore(GraphStore):
    """Edge indices in COO as memory-mapped ``.npy`` files, one per edge
    type, with the edge type's size in a small index file."""

    def __init__(self, root: str):
        super().__init__()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _put_edge_index(self, edge_index: Tuple[Tensor, Tensor],
                        edge_attr: EdgeAttr) -> bool:
        if edge_attr.layout.value != 'coo':
            raise ValueError("NpyGraphStore stores COO edge indices")
        name = _name(*edge_attr.edge_type)
        np.save(self.root / f'{name}.npy',
                torch.stack(list(edge_index)).numpy())
        np.save(self.root / f'{name}.size.npy', np.asarray(edge_attr.size))
        return True

    def _get_edge_index(self, edge_attr: EdgeAttr
                        ) -> Optional[Tuple[Tensor, Tensor]]:
        array = np.load(self.root / f'{_name(*edge_attr.edge_type)}.npy',
                        mmap_mode='r')
        return torch.from_numpy(array[0]), torch.from_numpy(array[1])

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        for suffix in ('', '.size'):
            name = f'{_name(*edge_attr.edge_type)}{suffix}.npy'
            (self.root / name).unlink(missing_ok=True)
        return True

    def get_all_edge_attrs(self) -> List[EdgeAttr]:
        out = []
        for path in sorted(self.root.glob('*.size.npy')):
            edge_type = tuple(path.name[:-len('.size.npy')].split('__'))
            size = tuple(int(v) for v in np.load(path))
            out.append(EdgeAttr(edge_type, 'coo', size=size))
        return out


def write(root: Path, scale: float):
    """``mag_like(scale)`` as files under ``root`` (once)."""
    if (root / 'done').exists():
        return
    data = mag_like(scale)
    features, graph = NpyFeatureStore(root / 'x'), NpyGraphStore(root / 'e')
    for nt, store in data.node_items():
        for key in ('x', 'y'):
            if key in store:
                features[nt, key, None] = store[key]
    for et, store in data.edge_items():
        size = (data[et[0]].num_nodes, data[et[2]].num_nodes)
        row, col = store.edge_index
        graph.put_edge_index((row, col), edge_type=et, layout='coo',
                             size=size)
    (root / 'done').touch()


def open_stores(root: Path):
    return NpyFeatureStore(root / 'x'), NpyGraphStore(root / 'e')


def loader_for(stores, sampler, seeds, rank, world, batch_size, epoch):
    g = torch.Generator().manual_seed(1000 * epoch + rank)
    return NeighborLoader(stores, [10, 5], input_nodes=(
        'paper', seeds[rank::world]), batch_size=batch_size, shuffle=True,
        drop_last=True, neighbor_sampler=sampler, generator=g)


def train(root: Path, ranks, world: int, epochs: int, batch_size: int):
    """Trains on the batches of ``ranks`` (this process's rank under
    torchrun, all ``world`` of them in one process) and returns the final
    parameters (flattened) and the losses."""
    stores = open_stores(root)
    num_papers = stores[0].get_tensor_size(TensorAttr('paper', 'y'))[0]
    train_ids, _, _ = split(num_papers)
    sampler = NeighborSampler(stores, [10, 5])
    torch.manual_seed(0)
    edge_types = [a.edge_type for a in stores[1].get_all_edge_attrs()]
    node_types = sorted({t for et in edge_types for t in (et[0], et[2])})
    model = HGT((node_types, edge_types), 32, 16)
    dims = {nt: stores[0].get_tensor_size(TensorAttr(nt, 'x'))[1]
            for nt in node_types}
    with torch.no_grad():  # input sizes of the lazy projections
        model({nt: torch.zeros(1, d) for nt, d in dims.items()}, {})
    net = DistributedDataParallel(model, find_unused_parameters=True) \
        if dist.is_initialized() else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for epoch in range(epochs):
        loaders = [loader_for(stores, sampler, train_ids, r, world,
                              batch_size, epoch) for r in ranks]
        for batches in zip(*loaders):
            loss = sum(
                F.cross_entropy(net(b.x_dict, b.edge_index_dict)
                                [:b['paper'].batch_size],
                                b['paper'].y[:b['paper'].batch_size])
                for b in batches) / len(batches)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return torch.cat([p.detach().flatten() for p in model.parameters()]), \
        losses


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', default='disk_graph_data')
    p.add_argument('--scale', type=float, default=0.02)
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--world', type=int, default=1,
                   help='ranks to run in this one process (without '
                   'torchrun)')
    p.add_argument('--save', default=None)
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.scale, args.batch_size = 0.002, 64
    root = Path(args.root) / f'scale{args.scale}'
    if 'RANK' in os.environ:
        dist.init_process_group('gloo')
        rank, world = dist.get_rank(), dist.get_world_size()
        if rank == 0:
            write(root, args.scale)
        dist.barrier()
        ranks = [rank]
    else:
        rank, world = 0, args.world
        write(root, args.scale)
        ranks = list(range(world))
    params, losses = train(root, ranks, world, args.epochs, args.batch_size)
    if rank == 0:
        files = sum(f.stat().st_size for f in root.rglob('*.npy'))
        print(f'{world} rank(s), {len(losses)} steps on a graph of '
              f'{files / 2**20:.0f} MB on disk; loss {losses[0]:.4f} -> '
              f'{losses[-1]:.4f}')
        if args.save:
            torch.save(params, args.save)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
