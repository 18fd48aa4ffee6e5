"""Movie genre classification on IMDB with a PyG model, trained once with
PyG's ``HGTConv`` and once with ``torch_geometric_hgt.HGTConv`` from the
same initial weights: the one-import change, same numbers, faster.

The graph ships inside the ``graphdatascience`` wheel (4,661 movies, 2,270
directors, 5,841 actors, 1,256-d plot-keyword features, genres of 2,939
movies in three classes). Install it without its dependencies (the parquet
files are read with pandas + pyarrow; never commit them):

    pip install --no-deps graphdatascience && pip install pandas pyarrow
    python examples/imdb_pyg_dropin.py            # ~1 min on 2 cores
    python examples/imdb_pyg_dropin.py --smoke    # seconds (CI)

Model (PyG's ``examples/hetero/hgt_dblp.py`` shape): a ``Linear(-1,
hidden)`` per node type, two ``HGTConv(hidden, hidden, metadata, heads)``
layers, a linear classifier on movies. Split: the labelled movies 60/20/20
at random from ``--seed``; metrics: accuracy and macro-F1 on the test part
at the last epoch. Writes ``imdb_loss.png`` (both loss curves) to ``--out``.
"""
import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv as PyGHGTConv
from torch_geometric.nn import Linear

import torch_geometric_hgt


def imdb_dir() -> Path:
    spec = importlib.util.find_spec('graphdatascience')
    path = None if spec is None else \
        Path(spec.origin).parent / 'resources' / 'imdb'
    if path is None or not path.is_dir():
        sys.exit("The IMDB graph is read from the 'graphdatascience' wheel, "
                 "which is not installed. Install it with:\n"
                 "    pip install --no-deps graphdatascience && "
                 "pip install pandas pyarrow")
    return path


def load(seed: int = 0) -> HeteroData:
    """IMDB as ``HeteroData`` with ``train/val/test_mask`` on movies."""
    import numpy as np
    import pandas as pd
    root = imdb_dir()

    def table(name):
        return pd.read_parquet(root / f'imdb_{name}.parquet.gzip')

    movies = pd.concat([table('movies_with_genre'),
                        table('movies_without_genre')])
    movies = movies.sort_values('nodeId')
    data = HeteroData()
    ids = {}
    for name, frame in (('movie', movies), ('director', table('directors')),
                        ('actor', table('actors'))):
        frame = frame.sort_values('nodeId')
        ids[name] = torch.tensor(frame.nodeId.values)
        data[name].x = torch.from_numpy(
            np.stack(frame.plot_keywords.values)).float()
    data['movie'].y = torch.tensor(movies['genre'].fillna(-1).values).long()

    def local(name, global_ids):
        return torch.searchsorted(ids[name], torch.tensor(global_ids.values))

    for kind, src in (('directed_in', 'director'), ('acted_in', 'actor')):
        edges = table(kind)
        ei = torch.stack([local(src, edges.sourceNodeId),
                          local('movie', edges.targetNodeId)])
        data[src, kind, 'movie'].edge_index = ei
        data['movie', f'rev_{kind}', src].edge_index = ei.flip(0)

    labelled = (data['movie'].y >= 0).nonzero().view(-1)
    g = torch.Generator().manual_seed(seed)
    labelled = labelled[torch.randperm(labelled.numel(), generator=g)]
    n_train, n_val = int(0.6 * labelled.numel()), int(0.2 * labelled.numel())
    for name, part in (('train', labelled[:n_train]),
                       ('val', labelled[n_train:n_train + n_val]),
                       ('test', labelled[n_train + n_val:])):
        mask = torch.zeros(data['movie'].num_nodes, dtype=torch.bool)
        mask[part] = True
        data['movie'][f'{name}_mask'] = mask
    return data


class HGT(torch.nn.Module):
    def __init__(self, conv_cls, hidden, out_channels, heads, num_layers,
                 metadata):
        super().__init__()
        self.lin_dict = torch.nn.ModuleDict(
            {nt: Linear(-1, hidden)
             for nt in metadata[0]})
        self.convs = torch.nn.ModuleList(
            [conv_cls(hidden, hidden, metadata, heads)
             for _ in range(num_layers)])
        self.lin = Linear(hidden, out_channels)

    def forward(self, x_dict, edge_index_dict):
        x_dict = {nt: self.lin_dict[nt](x).relu() for nt, x in x_dict.items()}
        for conv in self.convs:
            x_dict = conv(x_dict, edge_index_dict)
        return self.lin(x_dict['movie'])


def macro_f1(pred, y, num_classes):
    f1 = []
    for c in range(num_classes):
        tp = ((pred == c) & (y == c)).sum().item()
        fp = ((pred == c) & (y != c)).sum().item()
        fn = ((pred != c) & (y == c)).sum().item()
        f1.append(2 * tp / max(2 * tp + fp + fn, 1))
    return sum(f1) / num_classes


def train(model, data, epochs, lr):
    """Per-epoch losses and times; test accuracy and macro-F1 at the end."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    movie = data['movie']
    losses, times = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        out = model(data.x_dict, data.edge_index_dict)
        loss = F.cross_entropy(out[movie.train_mask],
                               movie.y[movie.train_mask])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        pred = model(data.x_dict, data.edge_index_dict).argmax(-1)
    mask = movie.test_mask
    acc = (pred[mask] == movie.y[mask]).float().mean().item()
    return losses, times, acc, macro_f1(pred[mask], movie.y[mask], 3)


def plot(losses, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in losses.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name,
                linestyle='--' if 'ours' in name else '-')
    ax.set_xlabel('epoch')
    ax.set_ylabel('training loss')
    ax.set_title('IMDB genre classification: the two HGTConv layers')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--lr', type=float, default=0.005)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', default='examples/out')
    p.add_argument('--smoke', action='store_true', help='seconds (CI)')
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.hidden = 3, 16
    torch.set_num_threads(args.threads)
    data = load(args.seed)
    sizes = ', '.join(f'{nt} {data[nt].num_nodes:,}'
                      for nt in data.node_types)
    print(f"IMDB: {sizes}; "
          f"{data.num_edges:,} edges over {len(data.edge_types)} edge "
          f"types; {int(data['movie'].train_mask.sum())} / "
          f"{int(data['movie'].val_mask.sum())} / "
          f"{int(data['movie'].test_mask.sum())} labelled movies "
          f"train / val / test")

    torch.manual_seed(args.seed)
    pyg_model = HGT(PyGHGTConv, args.hidden, 3, args.heads, args.layers,
                    data.metadata())
    with torch.no_grad():  # initialise the lazy linears
        pyg_model(data.x_dict, data.edge_index_dict)
    initial = copy.deepcopy(pyg_model.state_dict())
    ours_model = HGT(torch_geometric_hgt.HGTConv, args.hidden, 3,
                     args.heads, args.layers, data.metadata())
    with torch.no_grad():
        ours_model(data.x_dict, data.edge_index_dict)
    ours_model.load_state_dict(initial, strict=True)  # PyG's checkpoint

    results = {}
    for name, model in (('PyG HGTConv', pyg_model),
                        ('ours (torch_geometric_hgt.HGTConv)', ours_model)):
        results[name] = train(model, data, args.epochs, args.lr)
    print('| layer | time per epoch (median) | final loss | test accuracy '
          '| test macro-F1 |')
    print('|---|---|---|---|---|')
    for name, (losses, times, acc, f1) in results.items():
        median = sorted(times)[len(times) // 2]
        print(f'| {name} | {median * 1e3:.0f} ms | {losses[-1]:.4f} | '
              f'{acc:.4f} | {f1:.4f} |')
    (lp, tp, _, _), (lo, to, _, _) = results.values()
    speedup = sorted(tp)[len(tp) // 2] / sorted(to)[len(to) // 2]
    print(f'speed-up per epoch: {speedup:.1f}x; max loss difference over '
          f'the epochs: {max(abs(a - b) for a, b in zip(lp, lo)):.2e}')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot({name: r[0] for name, r in results.items()}, out / 'imdb_loss.png')
    print(f'loss curves: {out / "imdb_loss.png"}')


if __name__ == '__main__':
    main()
