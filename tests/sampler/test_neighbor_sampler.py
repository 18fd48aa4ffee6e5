"""NeighborSampler against the per-node Python reference: distributions,
exact node and edge sets where nothing is random, temporal and weighted
sampling, disjoint subgraphs, stores, and bad input."""
import random

import pytest
import torch
from conftest import DEVICES
from graphs import NODES, edge_lists, make_graph, make_homogeneous, to_stores
from torch_geometric.sampler import NodeSamplerInput

import sampling_reference as ref
from torch_geometric_hgt.sampler import NeighborSampler

ALL = {et: [-1, -1] for et in make_graph().edge_types}


def only(et, sizes):
    """Fan-outs that sample ``et`` alone (PyG wants every edge type)."""
    return {t: sizes if t == et else [0] * len(sizes) for t in ALL}


def sample(sampler, seeds, input_type='paper', time=None):
    seeds = torch.as_tensor(seeds)
    return sampler.sample_from_nodes(NodeSamplerInput(
        input_id=None, node=seeds, time=time, input_type=input_type))


def triples(out, et):
    """Global ``(src, dst, e_id)`` of the sampled edges of ``et``."""
    return sorted(zip(out.node[et[0]][out.row[et]].tolist(),
                      out.node[et[2]][out.col[et]].tolist(),
                      out.edge[et].tolist()))


def reference_triples(n_id, out, et):
    return sorted((n_id[et[0]][s], n_id[et[2]][d], e) for s, d, e in out[et])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.int64, torch.int32])
def test_everything_sampled_equals_reference_exactly(device, dtype):
    """With every neighbour taken, sampling is not random: node sets, their
    order per hop and the edges equal the reference's, for either index
    dtype."""
    data = make_graph(device=device)
    for store in data.edge_stores:
        store.edge_index = store.edge_index.to(dtype)
    seeds = [3, 0, 17]
    n_id, out = ref.neighbor_sample(edge_lists(make_graph()), list(NODES),
                                    'paper', seeds, ALL, random.Random(0))
    got = sample(NeighborSampler(data, ALL), seeds)
    assert got.node['paper'][:3].tolist() == seeds
    for nt in NODES:
        assert sorted(got.node[nt].tolist()) == sorted(n_id[nt])
        assert got.node[nt].device.type == torch.device(device).type
        assert sum(got.num_sampled_nodes[nt]) == len(n_id[nt])
    for et in data.edge_types:
        assert triples(got, et) == reference_triples(n_id, out, et)
        assert sum(got.num_sampled_edges[et]) == got.row[et].numel()


def assert_same_frequencies(a, b, draws):
    """A 5-sigma two-sample bound per node: seeded, so it cannot flake, and
    wide enough that the seeds below pass with any correct sampler."""
    p = (a + b) / 2
    slack = 5 * (p * (1 - p) * 2 / draws).sqrt() + 2 / draws
    assert ((a - b).abs() <= slack).all(), (a - b).abs().max()


def inclusion(n_ids, num_nodes):
    freq = torch.zeros(num_nodes)
    for n_id in n_ids:
        freq[torch.tensor(n_id, dtype=torch.long)] += 1
    return freq / len(n_ids)


def assert_matches_reference(draw, reference, draws):
    """Per node type, each node's inclusion frequency over ``draws`` calls
    of ``draw()`` matches that over as many ``reference()`` calls (both
    ``{node type: n_id list}``)."""
    ours = {nt: [] for nt in NODES}
    theirs = {nt: [] for nt in NODES}
    for _ in range(draws):
        got, want = draw(), reference()
        for nt in NODES:
            ours[nt].append(got[nt])
            theirs[nt].append(want[nt])
    for nt, n in NODES.items():
        assert_same_frequencies(inclusion(ours[nt], n),
                                inclusion(theirs[nt], n), draws)


def test_two_hop_frequencies_match_reference():
    data = make_graph()
    fanout = {et: [2, 2] for et in data.edge_types}
    sampler = NeighborSampler(data, fanout,
                              generator=torch.Generator().manual_seed(5))
    rng = random.Random(5)
    assert_matches_reference(
        lambda: {nt: v.tolist() for nt, v in
                 sample(sampler, [0, 1]).node.items()},
        lambda: ref.neighbor_sample(edge_lists(data), list(NODES), 'paper',
                                    [0, 1], fanout, rng)[0], 1000)


@pytest.mark.parametrize('replace', [False, True])
def test_edge_frequency_is_fanout_over_degree(replace):
    """Each in-edge of a seed is drawn with probability ``k / deg`` (at
    most 1) without replacement, ``1 - (1 - 1 / deg)^k`` with."""
    data = make_graph()
    et = ('author', 'writes', 'paper')
    dst = data[et].edge_index[1]
    deg = torch.bincount(dst, minlength=NODES['paper']).double()
    k, draws = 2, 1500
    sampler = NeighborSampler(data, only(et, [k]), replace=replace,
                              generator=torch.Generator().manual_seed(4))
    hits = torch.zeros(dst.numel(), dtype=torch.float64)
    for _ in range(draws):
        hits[sample(sampler, range(40)).edge[et].unique()] += 1
    p = 1 - (1 - 1 / deg[dst]) ** k if replace else \
        (k / deg[dst]).clamp(max=1)
    slack = 5 * (p * (1 - p) / draws).sqrt() + 1 / draws
    assert ((hits / draws - p).abs() <= slack).all()


def test_replace_draws_exactly_k_per_node():
    data = make_graph()
    et = ('author', 'writes', 'paper')
    out = sample(NeighborSampler(data, only(et, [7]), replace=True), range(40))
    deg = torch.bincount(data[et].edge_index[1], minlength=40)
    per_dst = torch.bincount(out.col[et], minlength=40)
    assert torch.equal(per_dst, torch.where(deg > 0, 7, 0))
    assert out.edge[et].unique().numel() < out.edge[et].numel()


def node_time_ok(data, et, s, e, bound):
    if 'time' not in data[et[0]]:
        return True  # types without times are not filtered
    return int(data[et[0]].time[s]) <= bound


@pytest.mark.parametrize('level', ['node', 'edge'])
def test_temporal_is_disjoint_and_equals_reference_per_seed(level):
    """Each seed grows its own subgraph of neighbours not later than its
    seed time (node times, or edge times); with every neighbour taken it
    equals the reference run for that seed alone."""
    data = make_graph(time=level == 'node', edge_time=level == 'edge')
    seeds = torch.tensor([3, 0, 17, 3])
    seed_time = torch.tensor([4, 9, 2, 7])
    sampler = NeighborSampler(data, ALL, time_attr='time')
    assert sampler.disjoint and sampler.is_temporal
    out = sample(sampler, seeds, time=seed_time)
    edges = edge_lists(data)
    for i, (seed, bound) in enumerate(zip(seeds.tolist(),
                                          seed_time.tolist())):
        if level == 'node':
            def keep(et, s, e):
                return node_time_ok(data, et, s, e, bound)
        else:
            def keep(et, s, e):
                return int(data[et].time[e]) <= bound
        n_id, want = ref.neighbor_sample(edges, list(NODES), 'paper', [seed],
                                         ALL, random.Random(0), keep=keep)
        for nt in NODES:
            mine = out.batch[nt] == i
            assert sorted(out.node[nt][mine].tolist()) == sorted(n_id[nt])
        for et in data.edge_types:
            mine = out.batch[et[2]][out.col[et]] == i
            got = sorted(zip(out.node[et[0]][out.row[et][mine]].tolist(),
                             out.node[et[2]][out.col[et][mine]].tolist(),
                             out.edge[et][mine].tolist()))
            assert got == reference_triples(n_id, want, et)
    # the bound bites: without it some neighbour would be later
    free = sample(NeighborSampler(data, ALL), seeds)
    assert sum(free.node[nt].numel() for nt in NODES) > \
        len(set(zip(out.batch['paper'].tolist(),
                    out.node['paper'].tolist())))


def test_temporal_last_takes_the_most_recent():
    data = make_graph(time=True)
    et = ('author', 'writes', 'paper')
    sampler = NeighborSampler(data, only(et, [1]), time_attr='time',
                              temporal_strategy='last')
    seeds = torch.arange(35)
    out = sample(sampler, seeds)
    src_time = data['author'].time[out.node['author'][out.row[et]]]
    ei = data[et].edge_index
    for j, t in zip(out.col[et].tolist(), src_time.tolist()):
        seed = int(seeds[j])
        ok = ei[1] == seed
        ok &= data['author'].time[ei[0]] <= data['paper'].time[seed]
        assert t == int(data['author'].time[ei[0][ok]].max())


def test_weighted_never_draws_zero_weight_and_keeps_fanout():
    data = make_graph(weight=True)
    sampler = NeighborSampler(data, [2, 2], weight_attr='weight',
                              generator=torch.Generator().manual_seed(1))
    drawn = 0
    for _ in range(20):
        out = sample(sampler, range(40))
        for et in data.edge_types:
            assert (data[et].weight[out.edge[et]] > 0).all()
            hop0 = out.col[et][:out.num_sampled_edges[et][0]]
            if hop0.numel():
                assert hop0.bincount().max() <= 2
            drawn += out.edge[et].numel()
    assert drawn > 0


def test_weighted_edge_frequencies_follow_weights():
    """One destination, sampling one neighbour: each in-edge is drawn in
    proportion to its weight."""
    data = make_graph(weight=True)
    et = ('author', 'writes', 'paper')
    dst = data[et].edge_index[1]
    target = int(torch.bincount(dst).argmax())
    w = data[et].weight * (dst == target)
    sampler = NeighborSampler(data, only(et, [1]), weight_attr='weight',
                              generator=torch.Generator().manual_seed(2))
    draws = 3000
    hits = torch.zeros(dst.numel())
    for _ in range(draws):
        hits[sample(sampler, [target]).edge[et]] += 1
    p = w / w.sum()
    slack = 5 * (p * (1 - p) / draws).sqrt() + 1 / draws
    assert ((hits / draws - p).abs() <= slack).all()


def test_induced_holds_every_edge_between_sampled_nodes():
    data = make_graph()
    out = sample(NeighborSampler(data, [2, 1], subgraph_type='induced',
                                 generator=torch.Generator().manual_seed(0)),
                 [0, 5, 9])
    for et in data.edge_types:
        src, dst = data[et].edge_index
        inside = torch.isin(src, out.node[et[0]]) & \
            torch.isin(dst, out.node[et[2]])
        assert sorted(out.edge[et].tolist()) == \
            inside.nonzero().view(-1).tolist()
        assert torch.equal(out.node[et[0]][out.row[et]],
                           src[out.edge[et]])


def test_homogeneous_equals_its_heterogeneous_form():
    data = make_homogeneous()
    hetero = data.to_heterogeneous(node_type_names=['v'],
                                   edge_type_names=[('v', 'to', 'v')])
    outs = [sample(NeighborSampler(d, [3, 2],
                                   generator=torch.Generator().manual_seed(7)),
                   [1, 4, 9], t)
            for d, t in [(data, None), (hetero, 'v')]]
    homo, het = outs
    assert torch.equal(homo.node, het.node['v'])
    assert torch.equal(homo.edge, het.edge[('v', 'to', 'v')])
    assert homo.num_sampled_nodes == het.num_sampled_nodes['v']


@pytest.mark.parametrize('layout', ['coo', 'csc'])
@pytest.mark.parametrize('time', [False, True])
def test_stores_give_the_same_samples_as_hetero_data(layout, time):
    """PyG's testing stores holding the graph sample the same nodes and
    edges as the graph itself (edge ids count in the stored order, which
    is the graph's for COO)."""
    data = make_graph(time=time)
    kw = {'time_attr': 'time'} if time else {}
    seeds = [3, 0, 17, 21]
    want = sample(NeighborSampler(data, ALL, **kw), seeds)
    got = sample(NeighborSampler(to_stores(data, layout), ALL, **kw), seeds)
    for nt in NODES:
        assert torch.equal(got.node[nt].sort().values,
                           want.node[nt].sort().values)
    for et in data.edge_types:
        if layout == 'coo':
            assert triples(got, et) == triples(want, et)
        else:
            assert [t[:2] for t in triples(got, et)] == \
                sorted(t[:2] for t in triples(want, et))


def test_seeded_generator_repeats():
    data = make_graph()

    def run(seed):
        s = NeighborSampler(data, [2, 2],
                            generator=torch.Generator().manual_seed(seed))
        return [sample(s, [0, 1, 2]).node['author'] for _ in range(3)]
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize('make,error,match', [
    (lambda d: NeighborSampler(d, {('a', 'b', 'c'): [2]}), ValueError,
     'edge types'),
    (lambda d: NeighborSampler(d, {**ALL, ('paper', 'cites', 'paper'): [2]}),
     ValueError, 'hops must be the same'),
    (lambda d: NeighborSampler(d, [2, -3]), ValueError, "'num_neighbors'"),
    (lambda d: NeighborSampler(d, 2), TypeError, "'num_neighbors'"),
    (lambda d: NeighborSampler(d, [2], time_attr='when'), ValueError,
     "'time_attr' is 'when'"),
    (lambda d: NeighborSampler(d, [2], weight_attr='w'), ValueError,
     "'weight_attr' is 'w'"),
    (lambda d: NeighborSampler(d, [2], subgraph_type='both'), ValueError,
     "'subgraph_type'"),
    (lambda d: NeighborSampler(d, [2], temporal_strategy='first'),
     ValueError, "'temporal_strategy'"),
    (lambda d: NeighborSampler(d, [2], disjoint=True,
                               subgraph_type='induced'), ValueError,
     "'disjoint'"),
    (lambda d: NeighborSampler(d, [2], generator=0), TypeError,
     "'generator'"),
    (lambda d: sample(NeighborSampler(d, [2]), [0, 40]), ValueError,
     'out of range'),
    (lambda d: sample(NeighborSampler(d, [2]), [0], 'nobody'), ValueError,
     "type 'nobody'"),
])
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make(make_graph())


def test_unsorted_edges_claimed_sorted_are_an_error():
    data = make_graph(time=True)
    with pytest.raises(ValueError, match="'is_sorted'"):
        NeighborSampler(data, [2], time_attr='time', is_sorted=True)


def test_temporal_seeds_of_a_type_without_times_need_input_time():
    data = make_graph(time=True)  # 'venue' has no times
    sampler = NeighborSampler(data, [2], time_attr='time')
    with pytest.raises(ValueError, match="'input_time'"):
        sample(sampler, [0], 'venue')
    out = sample(sampler, [0], 'venue', time=torch.tensor([3]))
    assert out.node['venue'].tolist() == [0]
