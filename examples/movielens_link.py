"""Link prediction on MovieLens-100k with its Freebase knowledge graph:
mini-batches from ``LinkNeighborLoader`` with negative sampling, a 2-layer
``HGTConv`` model, AUC and Recall@20 per epoch.

The data ships inside the ``recbole`` wheel (943 users, 1,682 movies,
100k ratings, 91,631 KG triples over 24 relations; read, never
committed):

    pip install --no-deps recbole
    python examples/movielens_link.py               # ~7 min on 2 cores
    python examples/movielens_link.py --smoke       # seconds (CI)

Graph (``movielens_kg.load``): users, movies, KG entities; 'rates' /
'rated_by' and every KG relation with its reverse. PyG's
``RandomLinkSplit`` splits the ratings 80/10/10 (validation and test get
one random negative per positive). Training: ``LinkNeighborLoader`` over
the training ratings, fan-out [10, 5], batches of 1,024 ratings plus
1,024 binary negatives (PyG's ``NegativeSampling``); the score of a pair
is the dot product of the two output embeddings, the loss binary
cross-entropy. Printed per epoch: the loss, the AUC of validation and test
pairs, Recall@20 over all movies a user has not rated in training, and
the sampling and training time per batch. On the first batch, PyG's own
``HGTConv`` with the same weights gives the same loss.
"""
import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch import Tensor
from torch_geometric.nn import HGTConv as PyGHGTConv
from torch_geometric.nn import Linear

sys.path.insert(0, str(Path(__file__).parent))
from movielens_kg import load  # noqa: E402

from torch_geometric_hgt import HGTConv  # noqa: E402
from torch_geometric_hgt.loader import LinkNeighborLoader  # noqa: E402

RATES = ('user', 'rates', 'movie')
RATED_BY = ('movie', 'rated_by', 'user')


class Model(torch.nn.Module):
    """Per-type input projections (a learned embedding for KG entities),
    ``layers`` HGT layers of class ``conv``, dot-product scores."""

    def __init__(self, data, hidden: int, conv=HGTConv, layers: int = 2):
        super().__init__()
        self.entity = torch.nn.Embedding(data['entity'].num_nodes, hidden)
        self.lin = torch.nn.ModuleDict(
            {nt: Linear(-1, hidden) for nt in ['user', 'movie']})
        self.convs = torch.nn.ModuleList(
            [conv(hidden, hidden, data.metadata(), heads=4)
             for _ in range(layers)])

    def embed(self, batch):
        x = {nt: self.lin[nt](batch[nt].x).relu() for nt in self.lin}
        x['entity'] = self.entity(batch['entity'].n_id)
        for conv in self.convs:
            out = conv(x, batch.edge_index_dict)
            x = {nt: out[nt] if out.get(nt) is not None else x[nt]
                 for nt in x}
        return x

    def forward(self, batch, pairs):
        x = self.embed(batch)
        return (x['user'][pairs[0]] * x['movie'][pairs[1]]).sum(-1)


def auc(score, label) -> float:
    """The probability that a random positive outscores a random negative
    (ties count half), from the ranks of the scores."""
    order = score.argsort()
    rank = torch.empty_like(order, dtype=torch.float64)
    rank[order] = torch.arange(1, score.numel() + 1, dtype=torch.float64)
    # average ranks within ties
    uniq, inverse = torch.unique(score, return_inverse=True)
    mean = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(
        0, inverse, rank) / torch.bincount(inverse).double()
    rank = mean[inverse]
    pos = label.bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((rank[pos].sum() - n_pos * (n_pos + 1) / 2) /
                 (n_pos * n_neg))


@torch.no_grad()
def evaluate(model, train_data, split_data, seen, k=20):
    """AUC of ``split_data``'s labelled pairs and Recall@k: the share of
    each user's held-out positives among their top-k movies not rated in
    training, averaged over users, on full-graph embeddings of the
    training graph."""
    model.eval()
    full = train_data.clone()
    full['entity'].n_id = torch.arange(full['entity'].num_nodes)
    x = model.embed(full)
    index = split_data[RATES].edge_label_index
    label = split_data[RATES].edge_label
    score = (x['user'][index[0]] * x['movie'][index[1]]).sum(-1)
    scores = x['user'] @ x['movie'].t()
    scores[seen[0], seen[1]] = float('-inf')
    top = scores.topk(k, dim=1).indices
    pos = index[:, label == 1]
    hit = torch.zeros_like(scores, dtype=torch.bool)
    hit[pos[0], pos[1]] = True
    found = hit.gather(1, top).sum(1).double()
    wanted = hit.sum(1).double()
    users = wanted > 0
    recall = float((found[users] / wanted[users].clamp(max=k)).mean())
    return auc(score, label), recall


def build(limit: int = 0):
    """The graph with every rating as an edge, split by PyG's
    ``RandomLinkSplit``: ``(train, val, test)`` graphs."""
    data, ratings, _, _ = load(limit=limit)
    data[RATES].edge_index = ratings
    data[RATED_BY].edge_index = ratings.flip(0)
    split = T.RandomLinkSplit(num_val=0.1, num_test=0.1,
                              edge_types=RATES, rev_edge_types=RATED_BY,
                              add_negative_train_samples=False)
    return split(data)


def make_loader(train_data, batch_size: int, seed: int = 0):
    """Training batches: the training ratings plus as many binary
    negatives, fan-out [10, 5]."""
    return LinkNeighborLoader(
        train_data, [10, 5], edge_label_index=(
            RATES, train_data[RATES].edge_label_index),
        neg_sampling='binary', batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed))


def make_model(train_data, hidden: int, batch, conv=HGTConv) -> Model:
    model = Model(train_data, hidden, conv=conv)
    with torch.no_grad():  # initialise the lazy projections
        model(batch, batch[RATES].edge_label_index)
    return model


def loss_on(model, batch) -> Tensor:
    store = batch[RATES]
    return F.binary_cross_entropy_with_logits(
        model(batch, store.edge_label_index), store.edge_label)


def train_epoch(model, loader, opt):
    """One epoch; returns the mean loss and the median sampling and
    training time per batch (s)."""
    model.train()
    total = count = 0
    sample_s, train_s = [], []
    it = iter(loader)
    while True:
        t = time.perf_counter()
        batch = next(it, None)
        if batch is None:
            break
        sample_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        loss = loss_on(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_s.append(time.perf_counter() - t)
        n = batch[RATES].edge_label.numel()
        total, count = total + loss.item() * n, count + n
    return (total / count, sorted(sample_s)[len(sample_s) // 2],
            sorted(train_s)[len(train_s) // 2])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--lr', type=float, default=0.005)
    p.add_argument('--smoke', action='store_true')
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.hidden, args.batch_size = 1, 16, 256
    torch.manual_seed(0)
    random.seed(0)  # PyG's negative_sampling draws with Python's random
    train_data, val_data, test_data = build(limit=4000 if args.smoke else 0)
    print(f'{train_data["user"].num_nodes} users, '
          f'{train_data["movie"].num_nodes} movies, '
          f'{train_data["entity"].num_nodes} entities, '
          f'{len(train_data.edge_types)} edge types; ratings: '
          f'{train_data[RATES].edge_label_index.size(1)} train, '
          f'{int(val_data[RATES].edge_label.sum())} val, '
          f'{int(test_data[RATES].edge_label.sum())} test')
    loader = make_loader(train_data, args.batch_size)
    first = next(iter(loader))
    model = make_model(train_data, args.hidden, first)
    # PyG's HGTConv, same weights, same batch: the same loss
    pyg = make_model(train_data, args.hidden, first, conv=PyGHGTConv)
    pyg.load_state_dict(model.state_dict())
    ours, theirs = loss_on(model, first).item(), loss_on(pyg, first).item()
    print(f'first batch: loss {ours:.8f} with ours, {theirs:.8f} with '
          f"PyG's HGTConv (|diff| {abs(ours - theirs):.1e})")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    seen = train_data[RATES].edge_index
    for epoch in range(1, args.epochs + 1):
        loss, sample_s, train_s = train_epoch(model, loader, opt)
        val_auc, val_recall = evaluate(model, train_data, val_data, seen)
        test_auc, test_recall = evaluate(model, train_data, test_data, seen)
        print(f'epoch {epoch}: loss {loss:.4f}, AUC val {val_auc:.4f} test '
              f'{test_auc:.4f}, Recall@20 val {val_recall:.4f} test '
              f'{test_recall:.4f}; per batch: sampling '
              f'{1e3 * sample_s:.1f} ms, training {1e3 * train_s:.1f} ms',
              flush=True)


if __name__ == '__main__':
    main()
