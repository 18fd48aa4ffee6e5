"""Mini-batch sampling: the loaders against the per-node Python reference
(and PyG's loaders where pyg-lib or torch-sparse import), and against one
forward+backward of a 2-layer HGTConv on the batch.

    python benchmarks/sampling.py                  # 1M nodes / 10M edges
    python benchmarks/sampling.py --device cuda    # graph and sampling on GPU
    python benchmarks/sampling.py --smoke

Graph: ``mag_like`` (ogbn-mag's types, power-law degrees) scaled to about
1M nodes and 10M edges, 128-d features. Batches of 1,024 papers, 2 hops:
fan-out [15, 10] (neighbour sampling) or 512 per type and hop
(HGSampling). "sampling" times the node and edge ids alone (what the
reference computes); "whole batch" adds gathering the features into a
``HeteroData``. Default process settings. Writes
``out/sampling[_cuda].json`` and prints the rows of ``RESULTS.md``.
"""
import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
import sampling_reference as ref  # noqa: E402

from torch_geometric_hgt import HGTConv  # noqa: E402
from torch_geometric_hgt.datasets import MAG_EDGES, MAG_NODES, \
    mag_like  # noqa: E402
from torch_geometric_hgt.loader import HGTLoader, NeighborLoader  # noqa
from torch_geometric_hgt.loader.graph import graph_of  # noqa: E402

OUT = Path(__file__).parent / 'out'


def timed(fn, device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


class LazyNeighbors(dict):
    """The reference's ``{dst: [(src, e_id)]}`` of one edge type, made per
    node on demand from the CSC arrays as Python lists."""

    def __init__(self, colptr, row, perm):
        super().__init__()
        self.colptr, self.row, self.perm = colptr, row, perm

    def get(self, v, default=None):
        a, b = self.colptr[v], self.colptr[v + 1]
        return list(zip(self.row[a:b], self.perm[a:b]))


def reference_inputs(data):
    graph = graph_of(data)
    return {et: LazyNeighbors(c.colptr.tolist(), c.edges[:, 0].tolist(),
                              c.edges[:, 1].tolist())
            for et, c in graph.csc.items()}


def pyg_loaders():
    """PyG's own loaders, where their native backends import."""
    try:
        from torch_geometric.typing import WITH_PYG_LIB, WITH_TORCH_SPARSE
    except ImportError:
        return {}
    from torch_geometric import loader
    out = {}
    if WITH_PYG_LIB or WITH_TORCH_SPARSE:
        out['neighbor'] = loader.NeighborLoader
    if WITH_TORCH_SPARSE:
        out['hgt'] = loader.HGTLoader
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--nodes', type=float, default=1e6)
    p.add_argument('--edges', type=float, default=1e7)
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--batches', type=int, default=10)
    p.add_argument('--reference-batches', type=int, default=2)
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.nodes, args.edges, args.batches = 2e4, 2e5, 2
        args.reference_batches = 1
    device = args.device
    scale = args.nodes / sum(MAG_NODES.values())
    edge_scale = args.edges / (2 * sum(MAG_EDGES.values()))
    t0 = time.perf_counter()
    data = mag_like(scale, edge_scale=edge_scale).to(device)
    build_s, _ = timed(lambda: graph_of(data), device)
    n_nodes = sum(data[nt].num_nodes for nt in data.node_types)
    print(f'graph: {n_nodes:,} nodes, {data.num_edges:,} edges on {device} '
          f'({time.perf_counter() - t0:.1f} s to make; CSC built in '
          f'{build_s:.2f} s)', flush=True)
    seeds = torch.randperm(data['paper'].num_nodes,
                           generator=torch.Generator().manual_seed(0))
    specs = {'neighbor': ([15, 10], NeighborLoader, ref.neighbor_sample),
             'hgt': ([512, 512], HGTLoader, ref.hgt_sample)}
    torch.manual_seed(0)
    model = torch.nn.ModuleList([HGTConv(128, 128, data.metadata(), heads=4)
                                 for _ in range(2)]).to(device)
    nbrs = reference_inputs(data) if args.reference_batches else None
    rows = {}
    for name, (sizes, cls, reference) in specs.items():
        loader = cls(data, sizes, ('paper', seeds[:args.batch_size *
                                                 args.batches]),
                     batch_size=args.batch_size,
                     generator=torch.Generator().manual_seed(1))
        # the samplers alone first (as the reference runs), then whole
        # batches (sampling plus slicing the features)
        core = []
        for b in range(args.batches):
            gen = torch.Generator(device=device).manual_seed(b)
            batch_seeds = seeds[b * args.batch_size:(b + 1) *
                                args.batch_size].to(device)
            core.append(timed(lambda: loader.sample(batch_seeds, None, gen),
                              device)[0])
        it = iter(loader)
        times, batches = [], []
        for b in range(args.batches):
            t, batch = timed(lambda: next(it), device)
            times.append(t)
            batches.append(batch)
        batch_s = statistics.median(times[1:] or times)
        sample_s = statistics.median(core[1:] or core)

        def step(batch):
            x = batch.x_dict
            for conv in model:
                x = {**x, **conv(x, batch.edge_index_dict)}
            x['paper'][:batch['paper'].batch_size].sum().backward()
        step(batches[0])
        train_s = statistics.median(
            timed(lambda: step(b), device)[0] for b in batches[1:] or
            batches)
        size = batches[-1]
        row = {'sample_ms': 1e3 * sample_s, 'batch_ms': 1e3 * batch_s,
               'fwd_bwd_ms': 1e3 * train_s,
               'nodes': sum(size[nt].num_nodes for nt in size.node_types),
               'edges': size.num_edges}
        if args.reference_batches:
            edges = {et: None for et in data.edge_types}
            rng = random.Random(0)
            ref_times = []
            for b in range(args.reference_batches):
                batch_seeds = seeds[b * args.batch_size:(b + 1) *
                                    args.batch_size].tolist()
                per_type = {k: sizes for k in (data.edge_types if name ==
                                               'neighbor' else
                                               data.node_types)}
                t = time.perf_counter()
                reference(edges, data.node_types, 'paper', batch_seeds,
                          per_type, rng, nbrs=nbrs)
                ref_times.append(time.perf_counter() - t)
            row['reference_ms'] = 1e3 * statistics.median(ref_times)
        pyg = pyg_loaders().get(name)
        if pyg is not None:
            kw = ({'num_neighbors': sizes} if name == 'neighbor' else
                  {'num_samples': sizes})
            pl = pyg(data, input_nodes=('paper', seeds[:args.batch_size *
                                                       args.batches]),
                     batch_size=args.batch_size, **kw)
            pit = iter(pl)
            row['pyg_ms'] = 1e3 * statistics.median(
                timed(lambda: next(pit), device)[0]
                for _ in range(args.batches))
        rows[name] = row
        print(json.dumps({name: row}), flush=True)
    result = {
        'device': (torch.cuda.get_device_name(device)
                   if device.startswith('cuda') else
                   f'{platform.machine()} CPU, {torch.get_num_threads()} '
                   f'threads, default malloc'),
        'torch': torch.__version__, 'graph_nodes': n_nodes,
        'graph_edges': data.num_edges, 'csc_build_s': build_s,
        'batch_size': args.batch_size, 'rows': rows}
    OUT.mkdir(exist_ok=True)
    name = 'sampling' if device == 'cpu' else 'sampling_cuda'
    (OUT / f'{name}.json').write_text(json.dumps(result, indent=1))
    print('| loader | sizes | batch nodes / edges | sampling | reference '
          '| vs reference | whole batch | fwd+bwd 2 layers | PyG |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, row in rows.items():
        ref_ms = row.get('reference_ms')
        vs = '-' if ref_ms is None else f"{ref_ms / row['sample_ms']:.0f}x"
        ref_ms = '-' if ref_ms is None else f'{ref_ms:.0f} ms'
        pyg = row.get('pyg_ms')
        pyg = 'not importable' if pyg is None else f'{pyg:.1f} ms'
        print(f"| {name} | {specs[name][0]} | {row['nodes']:,} / "
              f"{row['edges']:,} | {row['sample_ms']:.1f} ms | {ref_ms} | "
              f"{vs} | {row['batch_ms']:.1f} ms | {row['fwd_bwd_ms']:.0f} ms "
              f"| {pyg} |")

if __name__ == '__main__':
    main()
