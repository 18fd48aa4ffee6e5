"""Models on mini-batches: full-neighbourhood batches give the full
graph's outputs (our HGTConv and PyG's), the pyHGT-style model with
relative temporal encoding takes temporal batches, a model trains, and
seeded runs repeat with workers."""
import pytest
import torch
from graphs import NODES, EDGES, make_graph
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv as PyGHGTConv

from torch_geometric_hgt import HGT, HGTConv
from torch_geometric_hgt.loader import (HGTLoader, NeighborLoader,
                                        RelativeEdgeTime)

LOADERS = {
    'neighbor': lambda data, **kw: NeighborLoader(
        data, kw.pop('num_neighbors', [3, 2]), **kw),
    'hgt': lambda data, **kw: HGTLoader(
        data, kw.pop('num_samples', [4, 3]), **kw),
}
EVERYTHING = {'neighbor': {'num_neighbors': [-1, -1]},
              'hgt': {'num_samples': [100, 100]}}


def batches(kind, data, **kw):
    kw.setdefault('input_nodes', 'paper')
    kw.setdefault('batch_size', 7)
    return list(LOADERS[kind](data, **kw))


class TwoLayers(torch.nn.Module):
    def __init__(self, conv, metadata, channels=8):
        super().__init__()
        self.convs = torch.nn.ModuleList(
            [conv(channels, channels, metadata, heads=2) for _ in range(2)])

    def forward(self, x_dict, edge_index_dict):
        for conv in self.convs:
            out = conv(x_dict, edge_index_dict)
            x_dict = {**x_dict, **out}
        return x_dict


@pytest.mark.parametrize('conv', [HGTConv, PyGHGTConv])
@pytest.mark.parametrize('kind', list(LOADERS))
def test_full_neighbourhood_batches_give_full_graph_outputs(kind, conv):
    data = make_graph()
    torch.manual_seed(0)
    model = TwoLayers(conv, data.metadata()).eval()
    full = model(data.x_dict, data.edge_index_dict)['paper']
    for batch in batches(kind, data, batch_size=9, **EVERYTHING[kind]):
        bs = batch['paper'].batch_size
        out = model(batch.x_dict, batch.edge_index_dict)['paper'][:bs]
        torch.testing.assert_close(out, full[batch['paper'].n_id[:bs]],
                                   atol=1e-5, rtol=1e-5)


def test_pyhgt_model_takes_batches():
    """``HGT.forward_hetero`` takes the batches as they are; with every
    neighbour taken, its outputs at the seeds equal the full graph's."""
    data = make_graph()
    torch.manual_seed(0)
    model = HGT(8, 8, len(NODES), len(EDGES), n_heads=2, dropout=0.0).eval()
    full = model.forward_hetero(data)['paper']
    for batch in batches('neighbor', data, num_neighbors=[-1, -1]):
        bs = batch['paper'].batch_size
        out = model.forward_hetero(batch)['paper'][:bs]
        torch.testing.assert_close(out, full[batch['paper'].n_id[:bs]],
                                   atol=1e-5, rtol=1e-5)


def test_relative_edge_time_for_rte_models():
    """Temporal batches carry, through ``RelativeEdgeTime``, each edge's
    time relative to its example's seed, ``>= 0``; the RTE model runs on
    them and, one seed per batch, equals the full graph cut at that
    seed's time."""
    data = make_graph(time=True)
    data['venue'].time = torch.zeros(NODES['venue'], dtype=torch.long)
    torch.manual_seed(0)
    model = HGT(8, 8, len(NODES), len(EDGES), n_heads=2, dropout=0.0,
                use_RTE=True).eval()
    loader = NeighborLoader(data, [-1, -1], input_nodes='paper',
                            time_attr='time', batch_size=1,
                            transform=RelativeEdgeTime('time'))
    for i, batch in enumerate(loader):
        seed_time = data['paper'].time[i]
        for et in data.edge_types:
            ei = batch[et].edge_index
            want = seed_time - batch[et[0]].time[ei[0]]
            assert torch.equal(batch[et].edge_time, want)
            assert (want >= 0).all()
        out = model.forward_hetero(batch)['paper'][:1]
        assert torch.isfinite(out).all()
        if i == 5:
            break


def test_relative_edge_time_never_overwrites():
    data = HeteroData()
    data['p'].time = torch.tensor([3, 1, 2])
    data['p'].x = torch.zeros(3, 1)
    data['p', 'p'].edge_index = torch.tensor([[1, 2], [0, 0]])
    data['p', 'p'].edge_time = torch.tensor([7, 8])
    loader = NeighborLoader(data, [-1], input_nodes='p', time_attr='time',
                            batch_size=1, transform=RelativeEdgeTime())
    with pytest.raises(ValueError, match="has 'edge_time' already"):
        next(iter(loader))
    loader.transform = RelativeEdgeTime(key='rte_time')
    batch = next(iter(loader))
    assert batch['p', 'p'].rte_time.tolist() == [2, 1]
    assert batch['p', 'p'].edge_time.tolist() == [7, 8]


def test_model_trains_on_batches():
    data = make_graph()
    torch.manual_seed(0)
    model = TwoLayers(HGTConv, data.metadata())
    head = torch.nn.Linear(8, 3)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()],
                           lr=0.02)
    loader = HGTLoader(data, [6, 6], 'paper', batch_size=20, shuffle=True,
                       generator=torch.Generator().manual_seed(0))

    def epoch_loss():
        total = 0.0
        for batch in loader:
            bs = batch['paper'].batch_size
            logits = head(model(batch.x_dict,
                                batch.edge_index_dict)['paper'][:bs])
            loss = torch.nn.functional.cross_entropy(
                logits, batch['paper'].y[:bs])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        return total
    first = epoch_loss()
    for _ in range(30):
        last = epoch_loss()
    assert last < 0.5 * first


@pytest.mark.parametrize('kind', list(LOADERS))
def test_seeded_runs_repeat_with_workers(kind):
    data = make_graph()

    def run(num_workers, seed=9):
        return [(b['paper'].n_id, b['author'].n_id,
                 b['paper'].input_id)
                for b in batches(kind, data, shuffle=True,
                                 num_workers=num_workers,
                                 generator=torch.Generator().manual_seed(
                                     seed))]
    for workers in [0, 2]:
        a, b = run(workers), run(workers)
        assert len(a) == len(b) == 6
        assert all(torch.equal(x, y) for p, q in zip(a, b)
                   for x, y in zip(p, q))
    # every seed once per epoch, whatever the workers
    seeds = [p[2] for p in run(2)]
    assert torch.cat(seeds).sort().values.tolist() == list(range(40))
    # without a generator, torch.manual_seed repeats a run
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append([b['author'].n_id for b in batches(kind, data)])
    assert all(torch.equal(x, y) for x, y in zip(*runs))
