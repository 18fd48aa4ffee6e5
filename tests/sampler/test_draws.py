"""The vectorized sampling primitives against their definitions."""
import math

import pytest
import torch

from torch_geometric_hgt.sampler.draws import (
    KeyedNodeSet, NodeSet, last, uniform_with_replacement,
    uniform_without_replacement, weighted, weighted_without_replacement)


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


@pytest.mark.parametrize('kind', [NodeSet, KeyedNodeSet])
def test_node_set_relabels_in_first_appearance_order(kind):
    s = kind(10, torch.device('cpu'))
    seeds = torch.tensor([4, 2, 4]) if kind is NodeSet else \
        torch.tensor([4, 2, 14])  # keyed: the repeat is another example's
    s.add_seeds(seeds)
    first = s.add(torch.tensor([7, 2, 9, 7, 1]))
    assert first.tolist() == [0, 2, 4]
    assert s.size == 6
    assert s.local(torch.tensor([4, 2, 7, 9, 1, 0])).tolist() == \
        [0, 1, 3, 4, 5, -1]
    # a second call appends after the first, old nodes keep their place
    assert s.add(torch.tensor([0, 9, 0])).tolist() == [0]
    assert s.local(torch.tensor([0, 9])).tolist() == [6, 4]


@pytest.mark.parametrize('k', [-1, 0, 2, 5])
def test_uniform_with_replacement_draws_k_from_every_nonempty_group(k):
    g = torch.Generator().manual_seed(6)
    count = torch.tensor([0, 1, 3, 9])
    offset, owner = uniform_with_replacement(count, k, g)
    for i, c in enumerate(count.tolist()):
        got = offset[owner == i]
        want = c if k < 0 else (k if c else 0)
        assert got.numel() == want
        assert ((got >= 0) & (got < max(c, 1))).all()
    if k < 0:  # all, once each
        assert offset[owner == 3].tolist() == list(range(9))


def test_uniform_with_replacement_is_uniform_and_repeats():
    g = torch.Generator().manual_seed(7)
    n, draws = 5, 20000
    offset, _ = uniform_with_replacement(torch.tensor([n]), draws, g)
    freq = torch.bincount(offset, minlength=n) / draws
    assert ((freq - 1 / n).abs() <= binomial_slack(1 / n, draws)).all()


@pytest.mark.parametrize('k', [-1, 0, 2, 4])
def test_last_takes_the_most_recent(k):
    count = torch.tensor([0, 1, 3, 6])
    offset, owner = last(count, k)
    for i, c in enumerate(count.tolist()):
        take = c if k < 0 else min(k, c)
        assert offset[owner == i].tolist() == list(range(c - take, c))


@pytest.mark.parametrize('replace', [False, True])
def test_weighted_groups_never_draw_zero_weight(replace):
    g = torch.Generator().manual_seed(8)
    weight = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0, 0.0, 2.0, 2.0, 5.0])
    start, count = torch.tensor([0, 2, 4, 6]), torch.tensor([2, 2, 2, 3])
    offset, owner = weighted(weight, start, count, 2, replace, g)
    pos = start[owner] + offset
    assert (weight[pos] > 0).all()
    got = [offset[owner == i].numel() for i in range(4)]
    # group 2 has no positive weight; without replacement a group gives
    # at most its positive entries
    assert got == ([2, 2, 0, 2] if replace else [1, 1, 0, 2])
    if not replace:
        assert pos[owner == 3].unique().numel() == 2


def test_weighted_groups_match_successive_draws():
    """Per group, inclusion frequencies without replacement equal
    ``torch.multinomial``'s; with replacement, draw frequencies equal the
    normalised weights."""
    g = torch.Generator().manual_seed(9)
    w = torch.tensor([1.0, 2.0, 4.0, 0.5, 3.0, 8.0, 1.0])
    start, count = torch.tensor([0, 4]), torch.tensor([4, 3])
    draws = 3000
    ours = torch.zeros(w.numel())
    ref = torch.zeros(w.numel())
    hits = torch.zeros(w.numel())
    for _ in range(draws):
        offset, owner = weighted(w, start, count, 2, False, g)
        ours[start[owner] + offset] += 1
        for s, c in zip(start.tolist(), count.tolist()):
            ref[s + torch.multinomial(w[s:s + c], 2, generator=g)] += 1
        offset, owner = weighted(w, start, count, 2, True, g)
        # repeats count: index_add_, not +=
        hits.index_add_(0, start[owner] + offset,
                        torch.ones(owner.numel()))
    p = (ours + ref) / (2 * draws)
    slack = 5 * (p * (1 - p) * 2 / draws).sqrt() + 2 / draws
    assert ((ours - ref).abs() / draws <= slack).all()
    share = torch.cat([w[:4] / w[:4].sum(), w[4:] / w[4:].sum()])
    freq = hits / (2 * draws)
    assert ((freq - share).abs() <=
            5 * (share * (1 - share) / (2 * draws)).sqrt() +
            1 / draws).all()
