"""Bad inputs raise clear errors that name the argument; old argument
names keep working (pyHGT's ``num_types`` and ``tau`` with a
FutureWarning, the users' original layer without one)."""
import warnings

import pytest
import torch
from conftest import R, T, make_graph

from torch_geometric_hgt import (HGTConv, DenseHGT, DenseHGTConv,
                                 DifferentiableDenseHGTConv,
                                 DifferentiableHGT, HGT,
                                 gumbel_softmax_sample,
                                 soft_graph_from_logits)
from torch_geometric_hgt.conv import CONVS


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_dim=10, n_heads=4), "'out_dim'.*divisible.*'n_heads'"),
    (dict(num_node_types=0), "'num_node_types'"),
    (dict(dropout=1.5), "'dropout'"),
])
def test_bad_constructor(kwargs, match):
    args = dict(in_dim=8, out_dim=8, num_node_types=T, num_relations=R,
                n_heads=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        CONVS['vectorized'](**args)


CHUNKED = {
    'ultrafast': lambda c: CONVS['ultrafast'](8, 8, T, R, 2, chunk_size=c),
    'memory_efficient': lambda c: CONVS['memory_efficient'](
        8, 8, T, R, 2, chunk_size=c),
    'HGTConv': lambda c: HGTConv(8, 8, (['a'], [('a', 'to', 'a')]),
                                 chunk_size=c),
    'DenseHGTConv': lambda c: DenseHGTConv(8, 8, T, R, 2, chunk_size=c),
    'DifferentiableDenseHGTConv': lambda c: DifferentiableDenseHGTConv(
        8, 8, T, R, 2, chunk_size=c),
    'DenseHGT': lambda c: DenseHGT(8, 8, 8, T, R, chunk_size=c),
    'DifferentiableHGT': lambda c: DifferentiableHGT(8, 8, 8, T, R,
                                                     chunk_size=c),
}


@pytest.mark.parametrize('name', sorted(CHUNKED))
@pytest.mark.parametrize('bad', [0, -2, 2.5, True, 'big'])
def test_bad_chunk_size_is_refused_at_construction(name, bad):
    for good in (1, 'auto', None):
        assert CHUNKED[name](good).chunk_size == good
    with pytest.raises(ValueError, match="'chunk_size' must be"):
        CHUNKED[name](bad)


MODELS = {
    'HGT': lambda n: HGT(8, 8, T, R, n_layers=n),
    'DenseHGT': lambda n: DenseHGT(8, 8, 8, T, R, n_layers=n),
    'DifferentiableHGT': lambda n: DifferentiableHGT(8, 8, 8, T, R,
                                                     n_layers=n),
}


@pytest.mark.parametrize('name', sorted(MODELS))
@pytest.mark.parametrize('bad', [0, -1, 2.5, True])
def test_bad_n_layers_is_refused(name, bad):
    assert len(list(MODELS[name](3).children())[-1]) == 3
    with pytest.raises(ValueError, match="'n_layers' must be a positive"):
        MODELS[name](bad)


def _inputs():
    x, node_type, edge_index, edge_type, edge_time = make_graph('random')
    return dict(x=x, node_type=node_type, edge_index=edge_index,
                edge_type=edge_type, edge_time=None), edge_time


BAD = {
    'type id too large': (lambda a: a.update(node_type=a['node_type'] + T),
                          ValueError, "'node_type'.*\\[0, 4\\)"),
    'negative type id': (lambda a: a['node_type'].__setitem__(0, -1),
                         ValueError, "'node_type'"),
    'relation out of range': (lambda a: a.update(edge_type=a['edge_type'] + R),
                              ValueError, "'edge_type'"),
    'node index out of range': (
        lambda a: a['edge_index'].__setitem__((1, 0), 99), ValueError,
        "'edge_index'.*node indices"),
    'edge_index not [2, E]': (
        lambda a: a.update(edge_index=a['edge_index'].t()), ValueError,
        "'edge_index'"),
    'edge_index float': (
        lambda a: a.update(edge_index=a['edge_index'].float()), TypeError,
        "'edge_index'.*torch.long"),
    'edge_type wrong length': (
        lambda a: a.update(edge_type=a['edge_type'][:-1]), ValueError,
        "'edge_type'.*number of edges"),
    'feature dim': (lambda a: a.update(x=a['x'][:, :5]), ValueError,
                    "'x'.*in_dim"),
    'node_type wrong length': (
        lambda a: a.update(node_type=a['node_type'][:-1]), ValueError,
        "'node_type'.*number of nodes"),
    'NaN feature': (lambda a: a['x'].__setitem__((0, 0), float('nan')),
                    ValueError, "'x' contains NaN"),
    'Inf feature': (lambda a: a['x'].__setitem__((2, 1), float('inf')),
                    ValueError, "'x' contains NaN or Inf"),
    'x not a tensor': (lambda a: a.update(x=a['x'].tolist()), TypeError,
                       "'x' must be a torch.Tensor"),
    'x float64 for float32 weights': (
        lambda a: a.update(x=a['x'].double()), TypeError,
        "'x' is torch.float64 but the layer's parameters are torch.float32"),
    'edge_time without RTE': (
        lambda a: a.update(edge_time=torch.zeros_like(a['edge_type'])),
        ValueError, "'edge_time'.*use_RTE=False"),
}


@pytest.mark.parametrize('name', sorted(CONVS))
@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input(name, case):
    mutate, exc, match = BAD[case]
    args, _ = _inputs()
    mutate(args)
    layer = CONVS[name](8, 8, T, R, 2)
    with pytest.raises(exc, match=match):
        layer(**args)


@pytest.mark.parametrize('name', sorted(CONVS))
@pytest.mark.parametrize('time,match', [
    (None, "'edge_time' is required"), (-1, "'edge_time'"),
    (10, "'edge_time'.*max_len")])
def test_bad_edge_time(name, time, match):
    args, edge_time = _inputs()
    if time is not None:
        edge_time = edge_time.clone()
        edge_time[0] = time
        args['edge_time'] = edge_time
    layer = CONVS[name](8, 8, T, R, 2, use_RTE=True, max_len=10)
    with pytest.raises(ValueError, match=match):
        layer(**args)


@pytest.mark.parametrize('name', sorted(CONVS))
def test_validation_can_be_switched_off(name):
    args, _ = _inputs()
    layer = CONVS[name](8, 8, T, R, 2, validate=False).eval()
    args['x'][0, 0] = float('nan')
    out = layer(**args)  # no check: NaN propagates instead of raising
    assert bool(torch.isnan(out).any())


@pytest.mark.parametrize('name', sorted(CONVS))
def test_mismatched_devices(name):
    args, _ = _inputs()
    args['node_type'] = args['node_type'].to('meta')
    with pytest.raises(ValueError, match="'node_type' is on meta"):
        CONVS[name](8, 8, T, R, 2)(**args)


LAYERS = [CONVS[name] for name in sorted(CONVS)] + [DenseHGTConv]


@pytest.mark.parametrize('cls', LAYERS, ids=lambda c: c.__name__)
def test_num_types_still_builds_the_same_layer(cls):
    torch.manual_seed(0)
    new = cls(8, 8, num_node_types=3, num_relations=2, n_heads=2)
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match="'num_types' is now "
                                           "'num_node_types'"):
        old = cls(8, 8, num_types=3, num_relations=2, n_heads=2)
    assert old.num_node_types == old.num_types == 3
    for (name, a), (_, b) in zip(new.state_dict().items(),
                                 old.state_dict().items()):
        assert torch.equal(a, b), name


def test_model_num_types():
    with pytest.warns(FutureWarning):
        model = HGT(8, 8, num_types=3, num_relations=2)
    assert model.num_node_types == model.num_types == 3


def test_users_original_layer_takes_num_types_silently():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        layer = DifferentiableDenseHGTConv(8, 8, num_types=3,
                                           num_relations=2, n_heads=2)
    assert layer.num_node_types == 3


def test_both_names_is_an_error():
    with pytest.raises(TypeError, match="both 'num_types' and its new name"):
        CONVS['vectorized'](8, 8, num_types=3, num_node_types=3,
                            num_relations=2, n_heads=2)


def test_tau_is_temperature():
    logits = torch.randn(4, 5)
    want = gumbel_softmax_sample(logits, temperature=0.5, gumbel=False)
    with pytest.warns(FutureWarning, match="'tau' is now 'temperature'"):
        got = gumbel_softmax_sample(logits, tau=0.5, gumbel=False)
    assert torch.equal(got, want)
    assert not torch.equal(want, gumbel_softmax_sample(logits, gumbel=False))
    a, e, n = torch.randn(2, 3, 3), torch.randn(2, 3, 3, 2), \
        torch.randn(2, 3, 4)
    with pytest.warns(FutureWarning):
        old = soft_graph_from_logits(a, e, n, tau=0.5, gumbel=False)
    new = soft_graph_from_logits(a, e, n, temperature=0.5, gumbel=False)
    assert torch.equal(old.node_types, new.node_types)
