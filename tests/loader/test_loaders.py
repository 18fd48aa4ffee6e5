"""HGTLoader and NeighborLoader: structure of every batch, distributions
against the per-node references, exactness of models on full-neighbourhood
batches, temporal sampling, workers, and bad input."""
import math
import random

import pytest
import torch
from conftest import DEVICES
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv as PyGHGTConv

import sampling_reference as ref
from torch_geometric_hgt import HGT, HGTConv
from torch_geometric_hgt.loader import HGTLoader, NeighborLoader

NODES = {'paper': 40, 'author': 30, 'venue': 5, 'lonely': 6}
EDGES = [('author', 'writes', 'paper'), ('paper', 'cites', 'paper'),
         ('paper', 'in', 'venue'), ('paper', 'written_by', 'author'),
         ('venue', 'has', 'paper'), ('author', 'knows', 'lonely')]


def make_graph(seed: int = 0, device: str = 'cpu', time: bool = False,
               channels: int = 8) -> HeteroData:
    """Power-law-ish degrees, self-loops and repeated edges among
    'cites', isolated papers (no in-edges of any type), a node type with
    no edges ('lonely': its one edge type is empty) and edge features."""
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    for nt, n in NODES.items():
        data[nt].x = torch.randn(n, channels, generator=g)
        if time:
            data[nt].time = torch.randint(0, 10, (n, ), generator=g)
    data['paper'].y = torch.randint(0, 3, (NODES['paper'], ), generator=g)
    for (s, r, t), e in zip(EDGES, [80, 70, 40, 80, 40, 0]):
        # skewed destinations; the last 5 papers receive nothing
        n_dst = NODES[t] - 5 if t == 'paper' else NODES[t]
        dst = (torch.rand(e, generator=g) ** 2 * n_dst).long()
        src = torch.randint(0, NODES[s], (e, ), generator=g)
        if r == 'cites':
            src[:5] = dst[:5]  # self-loops
            src[5:10], dst[5:10] = src[10], dst[10]  # a repeated edge
        data[s, r, t].edge_index = torch.stack([src, dst])
        data[s, r, t].edge_attr = torch.randn(e, 3, generator=g)
    return data.to(device)


def edge_lists(data):
    return {et: data[et].edge_index.t().tolist() for et in data.edge_types}


LOADERS = {
    'neighbor': lambda data, **kw: NeighborLoader(
        data, kw.pop('num_neighbors', [3, 2]), **kw),
    'hgt': lambda data, **kw: HGTLoader(
        data, kw.pop('num_samples', [4, 3]), **kw),
}


def batches(kind, data, **kw):
    kw.setdefault('input_nodes', 'paper')
    kw.setdefault('batch_size', 7)
    return list(LOADERS[kind](data, **kw))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('kind', list(LOADERS))
def test_batches_are_subgraphs_of_the_graph(kind, device):
    data = make_graph(device=device)
    seen = []
    for batch in batches(kind, data, shuffle=True,
                         generator=torch.Generator().manual_seed(0)):
        bs = batch['paper'].batch_size
        seeds = batch['paper'].n_id[:bs]
        assert torch.equal(seeds, batch['paper'].input_id.to(device))
        seen.append(seeds)
        for nt in data.node_types:
            n_id = batch[nt].n_id
            assert n_id.unique().numel() == n_id.numel()
            assert torch.equal(batch[nt].x, data[nt].x[n_id])
        for et in data.edge_types:
            ei, e_id = batch[et].edge_index, batch[et].e_id
            full = data[et].edge_index[:, e_id]
            # local indices map back to the full graph's edges of the type
            assert torch.equal(batch[et[0]].n_id[ei[0]], full[0])
            assert torch.equal(batch[et[2]].n_id[ei[1]], full[1])
            assert torch.equal(batch[et].edge_attr, data[et].edge_attr[e_id])
            assert e_id.unique().numel() == e_id.numel() or kind == 'neighbor'
    # every seed once per epoch
    assert torch.cat(seen).sort().values.tolist() == list(range(40))


def test_neighbor_fanouts_respected():
    data = make_graph()
    fanout = {et: [2, 1] for et in data.edge_types}
    fanout[('paper', 'cites', 'paper')] = [3, -1]
    for batch in batches('neighbor', data, num_neighbors=fanout):
        for et in data.edge_types:
            per_hop = batch[et].num_sampled_edges
            ei = batch[et].edge_index
            hop0 = ei[1, :per_hop[0]]
            # hop 0: at most the fan-out per destination seed
            if per_hop[0]:
                assert hop0.bincount().max() <= fanout[et][0]
            assert sum(per_hop) == ei.size(1)
        for nt in data.node_types:
            assert sum(batch[nt].num_sampled_nodes) == batch[nt].num_nodes


def test_hgt_budgets_respected():
    data = make_graph()
    num = {'paper': [4, 3], 'author': [2, 5], 'venue': [1, 1],
           'lonely': [3, 3]}
    for batch in batches('hgt', data, num_samples=num):
        bs = batch['paper'].batch_size
        drawn = {nt: batch[nt].num_nodes - (bs if nt == 'paper' else 0)
                 for nt in data.node_types}
        for nt, sizes in num.items():
            assert drawn[nt] <= sum(sizes)
        # 'lonely' has no in-edges: nothing ever adds to its budget
        assert drawn['lonely'] == 0


@pytest.mark.parametrize('kind', list(LOADERS))
def test_awkward_seeds(kind):
    data = make_graph()
    isolated = torch.arange(35, 40)  # no in-edges
    batch = batches(kind, data, input_nodes=('paper', isolated))[0]
    assert batch['paper'].n_id.tolist() == isolated.tolist()
    assert all(batch[et].edge_index.size(1) == 0 for et in data.edge_types)
    # a batch larger than the seed set, and seeds of a type without edges
    big = batches(kind, data, batch_size=1000)
    assert len(big) == 1 and big[0]['paper'].batch_size == 40
    lonely = batches(kind, data, input_nodes='lonely', batch_size=4)
    assert [b['lonely'].batch_size for b in lonely] == [4, 2]


def inclusion(n_ids, num_nodes):
    freq = torch.zeros(num_nodes)
    for n_id in n_ids:
        freq[torch.tensor(n_id, dtype=torch.long)] += 1
    return freq / len(n_ids)


def assert_same_frequencies(a, b, draws):
    """A 5-sigma two-sample bound per node: seeded, so it cannot flake, and
    wide enough that the seeds below pass with any correct sampler."""
    p = (a + b) / 2
    slack = 5 * (p * (1 - p) * 2 / draws).sqrt() + 2 / draws
    assert ((a - b).abs() <= slack).all(), (a - b).abs().max()


def assert_matches_reference(loader, reference, draws):
    """Per node type, each node's inclusion frequency over ``draws``
    batches of ``loader`` matches that over as many ``reference()`` draws
    (``{node type: n_id list}``)."""
    ours = {nt: [] for nt in NODES}
    theirs = {nt: [] for nt in NODES}
    for _ in range(draws):
        batch = next(iter(loader))
        n_id = reference()
        for nt in NODES:
            ours[nt].append(batch[nt].n_id.tolist())
            theirs[nt].append(n_id[nt])
    for nt, n in NODES.items():
        assert_same_frequencies(inclusion(ours[nt], n),
                                inclusion(theirs[nt], n), draws)


@pytest.mark.parametrize('max_neighbors', [None, 2])
def test_hgt_inclusion_frequencies_match_reference(max_neighbors):
    data = make_graph()
    edges = edge_lists(data)
    seeds = [0, 1, 2]
    num = {'paper': [3, 2], 'author': [2, 2], 'venue': [1, 1],
           'lonely': [1, 1]}
    draws = 1500
    loader = HGTLoader(data, num, ('paper', torch.tensor(seeds)),
                       batch_size=3, max_neighbors=max_neighbors,
                       generator=torch.Generator().manual_seed(3))
    rng = random.Random(3)
    assert_matches_reference(loader, lambda: ref.hgt_sample(
        edges, list(NODES), 'paper', seeds, num, rng, max_neighbors)[0],
        draws)

def test_neighbor_edge_frequency_is_fanout_over_degree():
    data = make_graph()
    et = ('author', 'writes', 'paper')
    dst = data[et].edge_index[1]
    deg = torch.bincount(dst, minlength=NODES['paper']).float()
    k, draws = 2, 1500
    loader = NeighborLoader(data, {et: [k]}, 'paper', batch_size=40,
                            generator=torch.Generator().manual_seed(4))
    hits = torch.zeros(dst.numel())
    for _ in range(draws):
        hits[next(iter(loader))[et].e_id] += 1
    p = (k / deg[dst]).clamp(max=1)
    slack = 5 * (p * (1 - p) / draws).sqrt() + 1 / draws
    assert ((hits / draws - p).abs() <= slack).all()


def test_neighbor_two_hop_frequencies_match_reference():
    data = make_graph()
    edges = edge_lists(data)
    fanout = {et: [2, 2] for et in data.edge_types}
    draws = 1500
    loader = NeighborLoader(data, fanout, ('paper', torch.tensor([0, 1])),
                            batch_size=2,
                            generator=torch.Generator().manual_seed(5))
    rng = random.Random(5)
    assert_matches_reference(loader, lambda: ref.neighbor_sample(
        edges, list(NODES), 'paper', [0, 1], fanout, rng)[0], draws)

@pytest.mark.parametrize('kind', list(LOADERS))
def test_everything_sampled_equals_reference_exactly(kind):
    """With fan-outs or budgets covering every neighbour, sampling is not
    random: the node sets and edges equal the reference's."""
    data = make_graph()
    edges = edge_lists(data)
    seeds = [3, 0, 17]
    if kind == 'neighbor':
        sizes = {et: [-1, -1] for et in data.edge_types}
        n_id, out = ref.neighbor_sample(edges, list(NODES), 'paper', seeds,
                                        sizes, random.Random(0))
        loader = NeighborLoader(data, sizes, ('paper', torch.tensor(seeds)),
                                batch_size=3)
    else:
        sizes = {nt: [100, 100] for nt in NODES}
        n_id, out = ref.hgt_sample(edges, list(NODES), 'paper', seeds, sizes,
                                   random.Random(0))
        loader = HGTLoader(data, sizes, ('paper', torch.tensor(seeds)),
                           batch_size=3)
    batch = next(iter(loader))
    assert batch['paper'].n_id[:3].tolist() == seeds
    for nt in NODES:
        assert sorted(batch[nt].n_id.tolist()) == sorted(n_id[nt])
    for et in data.edge_types:
        got = sorted(zip(batch[et[0]].n_id[batch[et].edge_index[0]].tolist(),
                         batch[et[2]].n_id[batch[et].edge_index[1]].tolist(),
                         batch[et].e_id.tolist()))
        want = sorted((n_id[et[0]][s], n_id[et[2]][d], e)
                      for s, d, e in out[et])
        assert got == want


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
    sizes = {'neighbor': {'num_neighbors': [-1, -1]},
             'hgt': {'num_samples': [100, 100]}}[kind]
    for batch in batches(kind, data, batch_size=9, **sizes):
        bs = batch['paper'].batch_size
        out = model(batch.x_dict, batch.edge_index_dict)['paper'][:bs]
        torch.testing.assert_close(out, full[batch['paper'].n_id[:bs]],
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('use_RTE', [False, True])
def test_pyhgt_model_takes_batches(use_RTE):
    """The pyHGT-style ``HGT.forward_hetero`` takes the batches as they are
    (with ``edge_time`` from temporal sampling for RTE); with every
    neighbour taken, its outputs at the seeds equal the full graph's."""
    data = make_graph(time=use_RTE)
    torch.manual_seed(0)
    model = HGT(8, 8, len(NODES), len(EDGES), n_heads=2, dropout=0.0,
                use_RTE=use_RTE).eval()
    kwargs = {'time_attr': 'time'} if use_RTE else {}
    batches_ = batches('neighbor', data, num_neighbors=[-1, -1], **kwargs)
    if use_RTE:
        for batch in batches_:  # runs and is finite; times differ per seed
            out = model.forward_hetero(batch)['paper']
            assert torch.isfinite(out).all()
        return
    full = model.forward_hetero(data)['paper']
    for batch in batches_:
        bs = batch['paper'].batch_size
        out = model.forward_hetero(batch)['paper'][:bs]
        torch.testing.assert_close(out, full[batch['paper'].n_id[:bs]],
                                   atol=1e-5, rtol=1e-5)


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
def test_temporal_sampling(kind):
    data = make_graph(time=True)
    sizes = {'neighbor': {'num_neighbors': [3, 3]},
             'hgt': {'num_samples': [5, 5]}}[kind]
    n_edges = 0
    for batch in batches(kind, data, time_attr='time', **sizes):
        for nt in data.node_types:
            # nobody later than the seed time it was reached under
            assert (data[nt].time[batch[nt].n_id] <=
                    batch[nt].seed_time).all()
        for et in data.edge_types:
            ei, t = batch[et].edge_index, batch[et].edge_time
            src_time = data[et[0]].time[batch[et[0]].n_id[ei[0]]]
            assert torch.equal(t, batch[et[2]].seed_time[ei[1]] - src_time)
            assert (t >= 0).all()
            n_edges += ei.size(1)
    assert n_edges > 0
    # without the bound some sampled neighbour would be later: the test
    # graph is not trivially ordered
    later = 0
    for batch in batches(kind, data, **sizes):
        ei = batch['author', 'writes', 'paper'].edge_index
        seed_t = data['paper'].time[batch['paper'].n_id[ei[1]]]
        later += int((data['author'].time[batch['author'].n_id[ei[0]]] >
                      seed_t).sum())
    assert later > 0


@pytest.mark.parametrize('kind', list(LOADERS))
def test_deterministic_with_workers(kind):
    data = make_graph()

    def run(num_workers):
        return [(b['paper'].n_id, b['author'].n_id)
                for b in batches(kind, data, shuffle=True,
                                 num_workers=num_workers,
                                 generator=torch.Generator().manual_seed(9))]
    alone, pooled = run(0), run(2)
    assert len(alone) == len(pooled)
    for a, b in zip(alone, pooled):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    # without a generator, torch.manual_seed repeats a run
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append([b['author'].n_id for b in batches(kind, data)])
    assert len(runs[0]) == math.ceil(40 / 7)
    assert all(torch.equal(x, y) for x, y in zip(*runs))


def test_graph_built_once_and_rebuilt_after_change():
    from torch_geometric_hgt.loader.graph import graph_of
    data = make_graph()
    assert graph_of(data) is graph_of(data)
    before = graph_of(data)
    data['paper', 'cites', 'paper'].edge_index[0, 0] = 1
    assert graph_of(data) is not before


@pytest.mark.parametrize('make,error,match', [
    (lambda d: NeighborLoader(d, [2], 'nobody'), ValueError,
     "node type 'nobody'"),
    (lambda d: NeighborLoader(d, {('a', 'b', 'c'): [2]}, 'paper'),
     ValueError, 'not in the graph'),
    (lambda d: NeighborLoader(d, {EDGES[0]: [2], EDGES[1]: [2, 2]},
                              'paper'), ValueError, 'one entry per hop'),
    (lambda d: NeighborLoader(d, [2, -3], 'paper'), ValueError, '>= -1'),
    (lambda d: NeighborLoader(d, [2], 'paper', batch_size=0), ValueError,
     'batch_size'),
    (lambda d: NeighborLoader(d, [2], ('paper', torch.tensor([0, 40]))),
     ValueError, 'out of range'),
    (lambda d: NeighborLoader(d, [2], ('paper', torch.tensor([-1]))),
     ValueError, 'out of range'),
    (lambda d: NeighborLoader(d, [2], 'paper', time_attr='when'),
     ValueError, "no such attribute"),
    (lambda d: HGTLoader(d, {'nobody': [2]}, 'paper'), ValueError,
     'not in the graph'),
    (lambda d: HGTLoader(d, {'paper': [2], 'author': [1, 1]}, 'paper'),
     ValueError, 'one entry per hop'),
    (lambda d: HGTLoader(d, [2, -1], 'paper'), ValueError, '>= 0'),
    (lambda d: HGTLoader(d, [2], 'paper', max_neighbors=0), ValueError,
     'max_neighbors'),
    (lambda d: HGTLoader(d, [2], 'paper', collate_fn=list), TypeError,
     'collate_fn'),
    (lambda d: HGTLoader(d.to_homogeneous(), [2], 'paper'), TypeError,
     'HeteroData'),
])
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make(make_graph())
