"""Rating prediction on MovieLens-100k linked to a Freebase knowledge graph,
with our HGT (UltraFastHGTConv) and with PyG's HGTConv, same model, same
data, same split.

The data ships inside the ``recbole`` wheel (943 users, 1,682 movies,
100k ratings, 91,631 KG triples over 24 relations). Install it without its
dependencies and without importing it (the files are read through
``importlib.metadata``; never commit them, their licence forbids
redistribution):

    pip install --no-deps recbole
    python examples/movielens_kg.py --pyg-epochs 3   # ours ~1 min; PyG's
                                  # model takes minutes per epoch (no pyg-lib)
    python examples/movielens_kg.py --smoke          # seconds (CI)

Graph: node types user (age, gender, occupation), movie (year, genres),
entity (a learned embedding); edge types rates / rated_by (training ratings
only), has_entity / entity_of (movie <-> KG entity), and every KG relation
with its reverse (52 edge types in all). Split: ratings 80/10/10 at random;
metric: test RMSE at the epoch of the best validation RMSE.
"""
import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv

from torch_geometric_hgt import HGT, keep_freed_memory


def read_table(name: str):
    try:
        dist = importlib.metadata.distribution('recbole')
    except importlib.metadata.PackageNotFoundError:
        sys.exit("MovieLens-100k is read from the 'recbole' wheel, which is "
                 "not installed. Install it with:\n"
                 "    pip install --no-deps recbole")
    path = Path(dist.locate_file(f'recbole/dataset_example/ml-100k/'
                                 f'ml-100k.{name}'))
    if not path.exists():
        sys.exit(f'{path} is missing from the recbole wheel; reinstall it '
                 f'with: pip install --force-reinstall --no-deps recbole')
    lines = path.read_text(encoding='latin-1').splitlines()
    return [line.split('\t') for line in lines[1:] if line]


def load(seed: int = 0, limit: int = 0):
    """The HeteroData graph, ratings, split; ``limit`` > 0 keeps only that
    many ratings and KG triples (smoke runs)."""
    users = read_table('user')
    items = read_table('item')
    inter = read_table('inter')
    kg = read_table('kg')
    links = read_table('link')
    if limit:
        inter, kg = inter[:limit], kg[:limit]
    uid = {u[0]: i for i, u in enumerate(users)}
    occupations = sorted({u[3] for u in users})
    x_user = torch.zeros(len(users), 3 + len(occupations))
    for i, (_, age, gender, occ, _) in enumerate(users):
        x_user[i, 0] = float(age) / 50
        x_user[i, 1 + (gender == 'F')] = 1
        x_user[i, 3 + occupations.index(occ)] = 1
    iid = {m[0]: i for i, m in enumerate(items)}
    genres = sorted({g for m in items for g in m[3].split()})
    x_movie = torch.zeros(len(items), 1 + len(genres))
    for i, m in enumerate(items):
        year = float(m[2]) if m[2].strip().isdigit() else 1990.0
        x_movie[i, 0] = (year - 1990) / 10
        for g in m[3].split():
            x_movie[i, 1 + genres.index(g)] = 1
    entities = sorted({t[0] for t in kg} | {t[2] for t in kg} |
                      {link[1] for link in links})
    eid = {e: i for i, e in enumerate(entities)}
    relations = sorted({t[1] for t in kg})

    ratings = torch.tensor([[uid[r[0]], iid[r[1]]] for r in inter]).t()
    values = torch.tensor([float(r[2]) for r in inter])
    perm = torch.randperm(values.numel(),
                          generator=torch.Generator().manual_seed(seed))
    n = values.numel()
    split = {'train': perm[:int(0.8 * n)],
             'val': perm[int(0.8 * n):int(0.9 * n)],
             'test': perm[int(0.9 * n):]}

    data = HeteroData()
    data['user'].x = x_user
    data['movie'].x = x_movie
    data['entity'].num_nodes = len(entities)
    train = ratings[:, split['train']]
    data['user', 'rates', 'movie'].edge_index = train
    data['movie', 'rated_by', 'user'].edge_index = train.flip(0)
    link = torch.tensor([[iid[m], eid[e]] for m, e in links if m in iid]).t()
    data['movie', 'has_entity', 'entity'].edge_index = link
    data['entity', 'entity_of', 'movie'].edge_index = link.flip(0)
    heads = torch.tensor([eid[t[0]] for t in kg])
    tails = torch.tensor([eid[t[2]] for t in kg])
    rel = [relations.index(t[1]) for t in kg]
    rel = torch.tensor(rel)
    for r, name in enumerate(relations):
        sel = rel == r
        short = name.split('.')[-1][:40]
        ei = torch.stack([heads[sel], tails[sel]])
        data['entity', f'{r}_{short}', 'entity'].edge_index = ei
        data['entity', f'{r}_rev_{short}', 'entity'].edge_index = ei.flip(0)
    return data, ratings, values, split


class OurModel(torch.nn.Module):
    def __init__(self, data, hidden, entity_dim, n_layers):
        super().__init__()
        self.entity = torch.nn.Embedding(data['entity'].num_nodes,
                                         entity_dim)
        dims = [data['user'].x.size(1), data['movie'].x.size(1), entity_dim]
        self.hgt = HGT(dims, hidden, 3, len(data.edge_types), n_heads=4,
                       n_layers=n_layers, dropout=0.0, conv='ultrafast',
                       prev_norm=False, last_norm=False)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, data, pairs):
        data['entity'].x = self.entity.weight
        h = self.hgt.forward_hetero(data)
        return self.head(h['user'][pairs[0]] * h['movie'][pairs[1]]) \
            .squeeze(-1) + 3.5


class PyGModel(torch.nn.Module):
    """The same model with torch_geometric.nn.HGTConv layers."""
    def __init__(self, data, hidden, entity_dim, n_layers):
        super().__init__()
        self.entity = torch.nn.Embedding(data['entity'].num_nodes,
                                         entity_dim)
        self.adapt = torch.nn.ModuleDict({
            'user': torch.nn.Linear(data['user'].x.size(1), hidden),
            'movie': torch.nn.Linear(data['movie'].x.size(1), hidden),
            'entity': torch.nn.Linear(entity_dim, hidden)})
        self.convs = torch.nn.ModuleList([
            HGTConv(hidden, hidden, data.metadata(), heads=4)
            for _ in range(n_layers)])
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, data, pairs):
        x = {'user': data['user'].x, 'movie': data['movie'].x,
             'entity': self.entity.weight}
        h = {k: torch.tanh(self.adapt[k](v)) for k, v in x.items()}
        for conv in self.convs:
            out = conv(h, data.edge_index_dict)
            h = {k: out[k] if out.get(k) is not None else h[k] for k in h}
        return self.head(h['user'][pairs[0]] * h['movie'][pairs[1]]) \
            .squeeze(-1) + 3.5


def run(name, model, data, ratings, values, split, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = (float('inf'), float('inf'), 0)
    times = []
    for epoch in range(1, epochs + 1):
        model.train()
        t = time.perf_counter()
        idx = split['train']
        loss = F.mse_loss(model(data, ratings[:, idx]), values[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        model.eval()
        with torch.no_grad():
            rmse = {k: F.mse_loss(model(data, ratings[:, split[k]]),
                                  values[split[k]]).sqrt().item()
                    for k in ('val', 'test')}
        if rmse['val'] < best[0]:
            best = (rmse['val'], rmse['test'], epoch)
        print(f'{name} epoch {epoch:3d}: train MSE {loss.item():.4f}, val '
              f'RMSE {rmse["val"]:.4f} ({times[-1]:.2f} s)', flush=True)
    median = sorted(times)[len(times) // 2]
    print(f'{name}: test RMSE {best[1]:.4f} (best val {best[0]:.4f} at '
          f'epoch {best[2]}), median {median:.2f} s per training epoch')
    return best[1], median


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--pyg-epochs', type=int, default=None,
                   help="epochs for PyG's model (default: --epochs); its "
                   "backward is slow without pyg-lib")
    p.add_argument('--skip-pyg', action='store_true')
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.hidden = 1, 16
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    keep_freed_memory()  # large CPU temporaries stop paying page faults
    data, ratings, values, split = load(limit=2000 if args.smoke else 0)
    print(f'{data["user"].num_nodes} users, {data["movie"].num_nodes} '
          f'movies, {data["entity"].num_nodes} entities, '
          f'{len(data.edge_types)} edge types, {data.num_edges} edges; '
          f'{values.numel()} ratings')
    results = {}
    for name, cls in (('ours (UltraFastHGTConv)', OurModel),
                      ('PyG HGTConv', PyGModel)):
        if args.skip_pyg and cls is PyGModel:
            continue
        torch.manual_seed(0)
        model = cls(data, args.hidden, 32, args.layers)
        epochs = args.epochs if cls is OurModel or args.pyg_epochs is None \
            else args.pyg_epochs
        results[name] = run(name, model, data, ratings, values, split,
                            epochs, args.lr)
    print('\nsummary (test RMSE, s per epoch):')
    for name, (rmse, sec) in results.items():
        print(f'  {name:26s} {rmse:.4f}  {sec:.2f} s')


if __name__ == '__main__':
    main()
