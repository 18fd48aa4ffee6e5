"""Mini-batch HGT training on a large ogbn-mag-shaped graph.

    python examples/mag_minibatch.py                      # 2% of ogbn-mag
    python examples/mag_minibatch.py --loader neighbor --scale 0.1
    python examples/mag_minibatch.py --smoke              # seconds

PyG's ``hgt_dblp.py`` model (a ``Linear(-1, hidden)`` per node type, two
``HGTConv`` layers, a classifier) trained on paper classification with
``torch_geometric_hgt.loader.HGTLoader`` (HGSampling) or ``NeighborLoader``
batches, on a synthetic graph with ogbn-mag's types and power-law degrees
(``torch_geometric_hgt.datasets.mag_like``). Prints the sampling time and
the training time per batch, and the test accuracy of the seeds' outputs.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch_geometric.nn import Linear

from torch_geometric_hgt import HGTConv
from torch_geometric_hgt.datasets import mag_like
from torch_geometric_hgt.loader import HGTLoader, NeighborLoader


class HGT(torch.nn.Module):
    def __init__(self, metadata, hidden: int, out: int, heads: int = 2,
                 layers: int = 2):
        super().__init__()
        self.lin_dict = torch.nn.ModuleDict(
            {nt: Linear(-1, hidden) for nt in metadata[0]})
        self.convs = torch.nn.ModuleList(
            [HGTConv(hidden, hidden, metadata, heads) for _ in range(layers)])
        self.lin = Linear(hidden, out)

    def forward(self, x_dict, edge_index_dict):
        x_dict = {nt: self.lin_dict[nt](x).relu() for nt, x in x_dict.items()}
        for conv in self.convs:
            x_dict = {**x_dict, **conv(x_dict, edge_index_dict)}
        return self.lin(x_dict['paper'])


def make_loader(kind: str, data, seeds, batch_size: int, shuffle: bool,
                generator=None, **kwargs):
    if kind == 'hgt':
        return HGTLoader(data, [512, 512], ('paper', seeds),
                         batch_size=batch_size, shuffle=shuffle,
                         generator=generator, **kwargs)
    return NeighborLoader(data, [15, 10], ('paper', seeds),
                          batch_size=batch_size, shuffle=shuffle,
                          generator=generator, **kwargs)


def split(num_papers: int, seed: int = 0):
    """A fixed 80 / 10 / 10 split of the papers."""
    perm = torch.randperm(num_papers, generator=torch.Generator()
                          .manual_seed(seed))
    a, b = int(0.8 * num_papers), int(0.9 * num_papers)
    return perm[:a], perm[a:b], perm[b:]


def init_lazy(model, data):
    """One call on a node of each type gives ``Linear(-1, hidden)`` its
    input sizes (DistributedDataParallel needs them before wrapping)."""
    with torch.no_grad():
        model({nt: x[:1] for nt, x in data.x_dict.items()}, {})


def run_batch(model, batch):
    bs = batch['paper'].batch_size
    out = model(batch.x_dict, batch.edge_index_dict)[:bs]
    return out, batch['paper'].y[:bs]


@torch.no_grad()
def accuracy(model, loader) -> float:
    model.eval()
    correct = total = 0
    for batch in loader:
        out, y = run_batch(model, batch)
        correct += int((out.argmax(-1) == y).sum())
        total += y.numel()
    model.train()
    return correct / max(total, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--scale', type=float, default=0.02)
    p.add_argument('--loader', choices=['hgt', 'neighbor'], default='hgt')
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--lr', type=float, default=5e-3)
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.scale, args.epochs, args.batch_size = 0.002, 2, 256
    torch.manual_seed(0)
    data = mag_like(args.scale, num_classes=16)
    print(f"graph: {sum(data[nt].num_nodes for nt in data.node_types):,} "
          f"nodes, {data.num_edges:,} edges, {len(data.edge_types)} edge "
          f"types")
    train, _, test = split(data['paper'].num_nodes)
    model = HGT(data.metadata(), args.hidden, 16)
    init_lazy(model, data)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = make_loader(args.loader, data, train, args.batch_size, True,
                         torch.Generator().manual_seed(0))
    sample_s, train_s, batches = 0.0, 0.0, 0
    for epoch in range(args.epochs):
        total = 0.0
        t0 = time.perf_counter()
        for batch in loader:
            t1 = time.perf_counter()
            out, y = run_batch(model, batch)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            sample_s += t1 - t0
            train_s += t2 - t1
            batches += 1
            total += loss.item()
            t0 = time.perf_counter()
        print(f'epoch {epoch}: loss {total / len(loader):.4f}')
    print(f'{args.loader} loader: sampling {1e3 * sample_s / batches:.1f} '
          f'ms per batch, training (forward+backward+step) '
          f'{1e3 * train_s / batches:.1f} ms per batch')
    acc = accuracy(model, make_loader(args.loader, data, test,
                                      args.batch_size, False))
    print(f'test accuracy {acc:.4f} (chance {1 / 16:.4f})')


if __name__ == '__main__':
    main()
