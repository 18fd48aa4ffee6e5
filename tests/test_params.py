"""State-dict layout, initialisation and weight exchange of the shared
parameter module."""
import math

import pytest
import torch
from conftest import R, T, make_graph, randomize_

from torch_geometric_hgt import (DenseHGTConv, DifferentiableDenseHGTConv,
                                 HGTParameters, RelTemporalEncoding)
from torch_geometric_hgt.conv import CONVS


def pyhgt_keys(T, R, use_norm, use_RTE):
    """The state_dict keys of pyHGT's HGTConv, from the spec's table."""
    keys = {'relation_pri', 'relation_att', 'relation_msg', 'skip'}
    names = ['k_linears', 'q_linears', 'v_linears', 'a_linears']
    names += ['norms'] if use_norm else []
    for n in names:
        for t in range(T):
            keys |= {f'{n}.{t}.weight', f'{n}.{t}.bias'}
    if use_RTE:
        keys |= {'emb.emb.weight', 'emb.lin.weight', 'emb.lin.bias'}
    return keys


@pytest.mark.parametrize('name', sorted(CONVS))
@pytest.mark.parametrize('use_norm,use_RTE', [(True, True), (False, False)])
def test_state_dict_layout(name, use_norm, use_RTE):
    layer = CONVS[name](8, 12, T, R, 3, use_norm=use_norm, use_RTE=use_RTE,
                        max_len=7)
    sd = layer.state_dict()
    assert set(sd) == pyhgt_keys(T, R, use_norm, use_RTE)
    assert sd['relation_att'].shape == (R, 3, 4, 4)
    assert sd['k_linears.0.weight'].shape == (12, 8)
    assert sd['a_linears.0.weight'].shape == (12, 12)
    if use_RTE:
        assert sd['emb.emb.weight'].shape == (7, 8)


def test_pyhgt_state_dict_loads_strict():
    # a state_dict built from nothing but the spec's key/shape table
    H, d, D = 2, 4, 8
    sd = {'relation_pri': torch.rand(R, H),
          'relation_att': torch.rand(R, H, d, d),
          'relation_msg': torch.rand(R, H, d, d), 'skip': torch.rand(T),
          'emb.emb.weight': torch.rand(240, D),
          'emb.lin.weight': torch.rand(D, D), 'emb.lin.bias': torch.rand(D)}
    for n in ['k_linears', 'q_linears', 'v_linears', 'a_linears', 'norms']:
        for t in range(T):
            sd[f'{n}.{t}.weight'] = torch.rand(D, D) if n != 'norms' \
                else torch.rand(D)
            sd[f'{n}.{t}.bias'] = torch.rand(D)
    for cls in CONVS.values():
        layer = cls(D, D, T, R, H, use_RTE=True)
        layer.load_state_dict(sd, strict=True)
        assert torch.equal(layer.relation_att, sd['relation_att'])


@pytest.mark.parametrize('src', sorted(CONVS))
@pytest.mark.parametrize('dst', sorted(CONVS))
def test_every_layer_loads_every_other(src, dst):
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    a = randomize_(CONVS[src](8, 8, T, R, 2)).eval()
    b = CONVS[dst](8, 8, T, R, 2).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    assert torch.allclose(a(x, node_type, edge_index, edge_type),
                          b(x, node_type, edge_index, edge_type), atol=1e-5)


def test_initialisation():
    torch.manual_seed(0)
    layer = HGTParameters(16, 64, T, R, 2, use_RTE=True)
    d = 32
    assert torch.equal(layer.relation_pri, torch.ones(R, 2))
    assert torch.equal(layer.skip, torch.ones(T))
    bound = math.sqrt(6 / (2 * d))
    for w in (layer.relation_att.detach(), layer.relation_msg.detach()):
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.9 * bound  # uniform fills the range
    emb = layer.emb.emb.weight.detach()
    p, i = 5, 3
    assert math.isclose(float(emb[p, 2 * i]),
                        math.sin(p / 10000**(2 * i / 16)) / 4, abs_tol=1e-6)
    assert math.isclose(float(emb[p, 2 * i + 1]),
                        math.cos(p / 10000**(2 * i / 16)) / 4, abs_tol=1e-6)


def test_reset_parameters_restores_init():
    layer = HGTParameters(8, 8, T, R, 2, use_RTE=True)
    randomize_(layer)
    layer.reset_parameters()
    assert torch.equal(layer.skip, torch.ones(T))
    assert torch.equal(layer.relation_pri, torch.ones(R, 2))
    assert torch.allclose(layer.emb.emb.weight[0, 1::2],
                          torch.full((4, ), 8**-0.5))


def test_rte_adds_linear_of_embedding():
    rte = randomize_(RelTemporalEncoding(6, max_len=9))
    x, t = torch.randn(4, 6), torch.tensor([0, 3, 8, 3])
    want = x + rte.emb.weight[t] @ rte.lin.weight.T + rte.lin.bias
    assert torch.allclose(rte(x, t), want, atol=1e-6)


def test_repr_names_the_configuration():
    r = repr(CONVS['vectorized'](8, 16, 3, 2, 4, use_norm=False))
    assert r == ('VectorizedHGTConv(8, 16, num_node_types=3, num_relations=2, '
                 'n_heads=4, use_norm=False, use_RTE=False)')


@pytest.mark.parametrize('cls,kwargs,shown', [
    (CONVS['ultrafast'], dict(chunk_size=64), "chunk_size=64"),
    (CONVS['memory_efficient'], dict(checkpoint=True),
     "chunk_size='auto', checkpoint=True"),
    (DenseHGTConv, dict(chunk_size=8), "chunk_size=8, checkpoint=False"),
    (DifferentiableDenseHGTConv, dict(), "chunk_size='auto'"),
])
def test_repr_shows_the_backend_options(cls, kwargs, shown):
    r = repr(cls(8, 16, 3, 2, 4, **kwargs))
    assert r.startswith(f'{cls.__name__}(8, 16, num_node_types=3, ')
    assert r.endswith(f'use_RTE=False, {shown})')


@pytest.mark.parametrize('kwargs,match', [
    (dict(n_hid=0), "'n_hid' must be a positive int"),
    (dict(max_len=0), "'max_len' must be a positive int"),
    (dict(max_len=2.5), "'max_len' must be a positive int"),
])
def test_rte_bad_sizes(kwargs, match):
    args = dict(n_hid=6, max_len=9)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        RelTemporalEncoding(**args)
