"""HGTSampler against the per-node Python reference of HGSampling:
inclusion frequencies, exact node and edge sets where nothing is random,
budgets, temporal bounds, link-level seeds, stores, and bad input."""
import random

import pytest
import torch
from conftest import DEVICES
from graphs import NODES, edge_lists, make_graph, to_stores
from test_neighbor_sampler import (assert_matches_reference,
                                   reference_triples, sample, triples)
from torch_geometric.sampler import EdgeSamplerInput, NegativeSampling

import sampling_reference as ref
from torch_geometric_hgt.sampler import HGTSampler

EVERYTHING = {nt: [100, 100] for nt in NODES}


@pytest.mark.parametrize('device', DEVICES)
def test_everything_sampled_equals_reference_exactly(device):
    """Budgets covering every reachable node: the node sets and the induced
    edges equal the reference's."""
    data = make_graph(device=device)
    seeds = [3, 0, 17]
    n_id, out = ref.hgt_sample(edge_lists(make_graph()), list(NODES),
                               'paper', seeds, EVERYTHING, random.Random(0))
    got = sample(HGTSampler(data, EVERYTHING), seeds)
    assert got.node['paper'][:3].tolist() == seeds
    for nt in NODES:
        assert sorted(got.node[nt].tolist()) == sorted(n_id[nt])
    for et in data.edge_types:
        assert triples(got, et) == reference_triples(n_id, out, et)


@pytest.mark.parametrize('max_neighbors', [None, 2])
def test_inclusion_frequencies_match_reference(max_neighbors):
    data = make_graph()
    num = {'paper': [3, 2], 'author': [2, 2], 'venue': [1, 1],
           'lonely': [1, 1]}
    sampler = HGTSampler(data, num, max_neighbors=max_neighbors,
                         generator=torch.Generator().manual_seed(3))
    rng = random.Random(3)
    assert_matches_reference(
        lambda: {nt: v.tolist() for nt, v in
                 sample(sampler, [0, 1, 2]).node.items()},
        lambda: ref.hgt_sample(edge_lists(data), list(NODES), 'paper',
                               [0, 1, 2], num, rng, max_neighbors)[0], 1000)


def test_budgets_respected():
    data = make_graph()
    num = {'paper': [4, 3], 'author': [2, 5], 'venue': [1, 1]}
    sampler = HGTSampler(data, num)
    for start in range(0, 40, 7):
        out = sample(sampler, range(start, min(start + 7, 40)))
        seeds = min(start + 7, 40) - start
        assert out.node['paper'].numel() - seeds <= 7
        assert out.node['author'].numel() <= 7
        assert out.node['venue'].numel() <= 2
        # types left out draw nothing; 'lonely' has no in-edges anyway
        assert out.node['lonely'].numel() == 0


def test_temporal_bounds_every_neighbour_by_its_seed_time():
    """Nodes are drawn only from budgets their sampled neighbours add to,
    with times not later than those neighbours' seed times, so every
    sampled node is at most as late as the latest seed; the induced edges
    keep that bound."""
    data = make_graph(time=True)
    sampler = HGTSampler(data, [5, 5], time_attr='time',
                         generator=torch.Generator().manual_seed(0))
    seeds = torch.arange(0, 40, 3)
    for bound in [0, 3, 6]:
        seed_time = torch.full_like(seeds, bound)
        out = sample(sampler, seeds, time=seed_time)
        for nt in NODES:
            if 'time' in data[nt] and nt != 'paper':
                assert (data[nt].time[out.node[nt]] <= bound).all()
        drawn = out.node['paper'][seeds.numel():]
        assert (data['paper'].time[drawn] <= bound).all()


@pytest.mark.parametrize('neg', [None, 'binary', 'triplet'])
def test_link_level_seeds_are_the_endpoints(neg):
    data = make_graph()
    et = ('paper', 'written_by', 'author')
    sampler = HGTSampler(data, [4, 4],
                         generator=torch.Generator().manual_seed(1))
    index = data[et].edge_index[:, :10]
    inputs = EdgeSamplerInput(input_id=torch.arange(10), row=index[0],
                              col=index[1], input_type=et)
    neg_sampling = None if neg is None else NegativeSampling(neg, 2)
    out = sampler.sample_from_edges(inputs, neg_sampling)
    if neg == 'triplet':
        _, src, dst_pos, dst_neg, _ = out.metadata
        assert dst_neg.shape == (10, 2)
        assert torch.equal(out.node['paper'][src], index[0])
        assert torch.equal(out.node['author'][dst_pos], index[1])
        return
    _, label_index, label, _ = out.metadata
    num = 10 if neg is None else 30
    assert label_index.shape == (2, num)
    # the positives are the given edges, in the batch's local indices
    assert torch.equal(out.node['paper'][label_index[0, :10]], index[0])
    assert torch.equal(out.node['author'][label_index[1, :10]], index[1])
    if neg == 'binary':
        assert label.tolist() == [1.0] * 10 + [0.0] * 20


def test_stores_give_the_same_samples_as_hetero_data():
    data = make_graph()
    seeds = [3, 0, 17]
    want = sample(HGTSampler(data, EVERYTHING), seeds)
    got = sample(HGTSampler(to_stores(data), EVERYTHING), seeds)
    for nt in NODES:
        assert torch.equal(got.node[nt].sort().values,
                           want.node[nt].sort().values)
    for et in data.edge_types:
        assert triples(got, et) == triples(want, et)


@pytest.mark.parametrize('make,error,match', [
    (lambda d: HGTSampler(d, {'nobody': [2]}), ValueError,
     'not in the graph'),
    (lambda d: HGTSampler(d, {'paper': [2], 'author': [1, 1]}), ValueError,
     'one entry per hop'),
    (lambda d: HGTSampler(d, [2, -1]), ValueError, '>= 0'),
    (lambda d: HGTSampler(d, 3), TypeError, "'num_samples'"),
    (lambda d: HGTSampler(d, [2], max_neighbors=0), ValueError,
     'max_neighbors'),
    (lambda d: HGTSampler(d.to_homogeneous(), [2]), TypeError,
     'HeteroData'),
    (lambda d: HGTSampler(make_graph(edge_time=True), [2],
                          time_attr='time'), ValueError, 'node-level'),
    (lambda d: sample(HGTSampler(d, [2]), [-1]), ValueError,
     'out of range'),
])
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make(make_graph())
