"""The vectorized sampling primitives against their definitions."""
import math

import pytest
import torch

from torch_geometric_hgt.loader.sampling import (
    NodeSet, uniform_without_replacement,
    weighted_without_replacement)


def binomial_slack(p, n, sigmas=5.0):
    """Half-width of a ``sigmas``-sigma band around a frequency of ``n``
    draws (plus one draw for the discreteness)."""
    return sigmas * math.sqrt(p * (1 - p) / n) + 1 / n


@pytest.mark.parametrize('k', [-1, 0, 1, 3, 7])
def test_uniform_draws_distinct_offsets_in_range(k):
    g = torch.Generator().manual_seed(0)
    count = torch.tensor([0, 1, 3, 7, 8, 50, 2])
    offset, owner = uniform_without_replacement(count, k, g)
    for i, c in enumerate(count.tolist()):
        got = offset[owner == i].tolist()
        assert len(got) == (c if k < 0 else min(k, c))
        assert len(set(got)) == len(got)
        assert all(0 <= o < c for o in got)


def test_uniform_each_offset_with_probability_k_over_n():
    g = torch.Generator().manual_seed(1)
    n, k, draws = 12, 4, 4000
    hits = torch.zeros(n)
    pairs = torch.zeros(n, n)
    for _ in range(draws):
        offset, _ = uniform_without_replacement(torch.tensor([n]), k, g)
        hits[offset] += 1
        onehot = torch.zeros(n)
        onehot[offset] = 1
        pairs += onehot[:, None] * onehot[None]
    p = k / n
    assert ((hits / draws - p).abs() <= binomial_slack(p, draws)).all()
    # every pair equally likely too: a uniform subset, not just uniform
    # marginals
    p2 = k * (k - 1) / (n * (n - 1))
    off = pairs[~torch.eye(n, dtype=torch.bool)] / draws
    assert ((off - p2).abs() <= binomial_slack(p2, draws)).all()


def test_weighted_matches_successive_draws():
    """Inclusion frequencies of the Gumbel top-k equal those of
    ``torch.multinomial`` without replacement (successive draws)."""
    w = torch.tensor([0.0, 1.0, 2.0, 4.0, 0.5, 3.0, 0.0, 8.0])
    k, draws = 3, 4000
    g = torch.Generator().manual_seed(2)
    ours = torch.zeros(w.numel())
    ref = torch.zeros(w.numel())
    for _ in range(draws):
        ours[weighted_without_replacement(w, k, g)] += 1
        ref[torch.multinomial(w, k, replacement=False, generator=g)] += 1
    assert ours[w == 0].sum() == 0
    p = (ours + ref) / (2 * draws)
    slack = 5 * (p * (1 - p) * 2 / draws).sqrt() + 2 / draws
    assert ((ours - ref).abs() / draws <= slack).all()


def test_weighted_takes_all_positive_when_few():
    w = torch.tensor([0.0, 2.0, 0.0, 1.0])
    got = weighted_without_replacement(w, 5, torch.Generator())
    assert sorted(got.tolist()) == [1, 3]


def test_node_set_relabels_in_first_appearance_order():
    s = NodeSet(10, torch.device('cpu'))
    s.add_seeds(torch.tensor([4, 2, 4]))
    new, first = s.add(torch.tensor([7, 2, 9, 7, 1]))
    assert new.tolist() == [7, 9, 1] and first.tolist() == [0, 2, 4]
    assert s.n_id().tolist() == [4, 2, 4, 7, 9, 1]
    assert s.local(torch.tensor([4, 2, 7, 9, 1, 0])).tolist() == \
        [0, 1, 3, 4, 5, -1]
    # a second call sees the first's nodes as sampled
    new, first = s.add(torch.tensor([1, 0, 0, 4]))
    assert new.tolist() == [0] and first.tolist() == [1]


