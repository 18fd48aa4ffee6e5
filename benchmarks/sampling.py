"""Mini-batch sampling: our samplers against the per-node Python reference
(and PyG's own loaders where pyg-lib or torch-sparse import), and against
one forward+backward of a 2-layer HGTConv on the batch.

    python benchmarks/sampling.py                  # 1M nodes / 10M edges
    python benchmarks/sampling.py --device cuda    # graph and sampling on GPU
    python benchmarks/sampling.py --smoke

Graph: ``mag_like`` (ogbn-mag's types, power-law degrees) scaled to about
1M nodes and 10M edges, 128-d features. Node-level batches of 1,024
papers, link-level batches of 1,024 'writes' edges plus 1,024 binary
negatives; 2 hops, fan-out [15, 10] (neighbour sampling) or 512 per type
and hop (HGSampling). "sampling" times the sampler alone (node and edge
ids: what the reference computes); "whole batch" is the loader's batch
(sampling plus PyG's gathering of the features into a ``HeteroData``).
Default process settings. Writes ``out/sampling[_cuda].json`` and prints
the rows of ``RESULTS.md``.
"""
import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
sys.path.insert(0, str(Path(__file__).parent))
import sampling_reference as ref  # noqa: E402
from common import device_name  # noqa: E402
from torch_geometric.sampler import (EdgeSamplerInput,  # noqa: E402
                                     NegativeSampling, NodeSamplerInput)

from torch_geometric_hgt import HGTConv  # noqa: E402
from torch_geometric_hgt.datasets import MAG_EDGES, MAG_NODES, \
    mag_like  # noqa: E402
from torch_geometric_hgt.loader import (HGTLoader, LinkHGTLoader,  # noqa
                                        LinkNeighborLoader, NeighborLoader)
from torch_geometric_hgt.sampler import HGTSampler, NeighborSampler  # noqa

OUT = Path(__file__).parent / 'out'
LINK = ('author', 'writes', 'paper')


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


def reference_inputs(sampler):
    return {et: LazyNeighbors(r.colptr.tolist(), r.edges[:, 0].tolist(),
                              r.edges[:, 1].tolist())
            for et, r in sampler.graph.rel.items()}


def pyg_loaders():
    """PyG's own loaders, where their native backends import."""
    from torch_geometric import loader
    from torch_geometric.typing import WITH_PYG_LIB, WITH_TORCH_SPARSE
    out = {}
    if WITH_PYG_LIB or WITH_TORCH_SPARSE:
        out['neighbor'] = loader.NeighborLoader
        out['link'] = loader.LinkNeighborLoader
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
    device, bs = args.device, args.batch_size
    scale = args.nodes / sum(MAG_NODES.values())
    edge_scale = args.edges / (2 * sum(MAG_EDGES.values()))
    t0 = time.perf_counter()
    data = mag_like(scale, edge_scale=edge_scale).to(device)
    build_s, neighbor = timed(lambda: NeighborSampler(data, [15, 10]),
                              device)
    hgt = HGTSampler(data, [512, 512])
    n_nodes = sum(data[nt].num_nodes for nt in data.node_types)
    print(f'graph: {n_nodes:,} nodes, {data.num_edges:,} edges on {device} '
          f'({time.perf_counter() - t0:.1f} s to make; CSC built in '
          f'{build_s:.2f} s)', flush=True)
    n = bs * args.batches
    seeds = torch.randperm(data['paper'].num_nodes,
                           generator=torch.Generator().manual_seed(0))[:n]
    links = torch.randperm(data[LINK].num_edges,
                           generator=torch.Generator().manual_seed(0))[:n]
    label_index = data[LINK].edge_index[:, links.to(device)].cpu()
    neg = NegativeSampling('binary', 1.0)

    def node_input(b):
        return NodeSamplerInput(None, seeds[b * bs:(b + 1) * bs],
                                input_type='paper')

    def edge_input(b):
        i = slice(b * bs, (b + 1) * bs)
        return EdgeSamplerInput(None, label_index[0, i], label_index[1, i],
                                input_type=LINK)
    kw = dict(batch_size=bs, generator=torch.Generator().manual_seed(1))
    specs = {
        'neighbor': ([15, 10], lambda b: neighbor.sample_from_nodes(
            node_input(b)), lambda: NeighborLoader(
            data, [15, 10], ('paper', seeds), neighbor_sampler=neighbor,
            **kw)),
        'hgt': ([512, 512], lambda b: hgt.sample_from_nodes(node_input(b)),
                lambda: HGTLoader(data, [512, 512], ('paper', seeds), **kw)),
        'link': ([15, 10], lambda b: neighbor.sample_from_edges(
            edge_input(b), neg), lambda: LinkNeighborLoader(
            data, [15, 10], edge_label_index=(LINK, label_index),
            neg_sampling=neg, neighbor_sampler=neighbor, **kw)),
        'link_hgt': ([512, 512], lambda b: hgt.sample_from_edges(
            edge_input(b), neg), lambda: LinkHGTLoader(
            data, [512, 512], edge_label_index=(LINK, label_index),
            neg_sampling=neg, **kw)),
    }
    torch.manual_seed(0)
    model = torch.nn.ModuleList([HGTConv(128, 128, data.metadata(), heads=4)
                                 for _ in range(2)]).to(device)
    nbrs = reference_inputs(neighbor) if args.reference_batches else None
    rows = {}
    for name, (sizes, sample, make_loader) in specs.items():
        core = [timed(lambda: sample(b), device)[0]
                for b in range(args.batches)]
        it = iter(make_loader())
        times, batches = [], []
        for b in range(args.batches):
            t, batch = timed(lambda: next(it), device)
            times.append(t)
            batches.append(batch)

        def step(batch):
            x = batch.x_dict
            for conv in model:
                x = {**x, **conv(x, batch.edge_index_dict)}
            sum(v.sum() for v in x.values()).backward()
        step(batches[0])
        size = batches[-1]
        row = {'sample_ms': 1e3 * statistics.median(core[1:] or core),
               'batch_ms': 1e3 * statistics.median(times[1:] or times),
               'fwd_bwd_ms': 1e3 * statistics.median(
                   timed(lambda: step(b), device)[0]
                   for b in batches[1:] or batches),
               'nodes': sum(size[nt].num_nodes for nt in size.node_types),
               'edges': size.num_edges}
        reference = {'neighbor': ref.neighbor_sample,
                     'hgt': ref.hgt_sample}.get(name)
        if args.reference_batches and reference is not None:
            rng = random.Random(0)
            per_type = {k: sizes for k in (data.edge_types if name ==
                                           'neighbor' else data.node_types)}
            ref_times = []
            for b in range(args.reference_batches):
                t = time.perf_counter()
                reference({et: None for et in data.edge_types},
                          data.node_types, 'paper',
                          seeds[b * bs:(b + 1) * bs].tolist(), per_type,
                          rng, nbrs=nbrs)
                ref_times.append(time.perf_counter() - t)
            row['reference_ms'] = 1e3 * statistics.median(ref_times)
        pyg = pyg_loaders().get(name)
        if pyg is not None:
            size_kw = ({'num_samples': sizes} if name == 'hgt' else
                       {'num_neighbors': sizes})
            inputs = ({'edge_label_index': (LINK, label_index),
                       'neg_sampling': neg} if name == 'link' else
                      {'input_nodes': ('paper', seeds)})
            pit = iter(pyg(data, batch_size=bs, **size_kw, **inputs))
            pyg_times = [timed(lambda: next(pit), device)[0]
                         for _ in range(args.batches)]
            row['pyg_ms'] = 1e3 * statistics.median(pyg_times[1:] or
                                                    pyg_times)
        rows[name] = row
        print(json.dumps({name: row}), flush=True)
    result = {'device': device_name(device), 'torch': torch.__version__,
              'graph_nodes': n_nodes, 'graph_edges': data.num_edges,
              'csc_build_s': build_s, 'batch_size': bs, 'rows': rows}
    OUT.mkdir(exist_ok=True)
    name = 'sampling' if device == 'cpu' else 'sampling_cuda'
    (OUT / f'{name}.json').write_text(json.dumps(result, indent=1))
    print(f"device: {result['device']}")
    print('| sampler | sizes | batch nodes / edges | sampling | reference '
          '| vs reference | whole batch | fwd+bwd 2 layers | PyG whole '
          'batch |')
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
