"""DifferentiableDenseHGTConv / DifferentiableHGT reproduce the users'
original layer and model exactly."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import AUTOCAST, assert_autocast_close, randomize_
from reference import spec_legacy

from torch_geometric_hgt import (DifferentiableDenseHGTConv,
                                 DifferentiableHGT,
                                 LoopDifferentiableDenseHGTConv,
                                 OptimizedDifferentiableHGT,
                                 convert_graphvae_to_differentiable,
                                 create_differentiable_hgt_data)

T, R = 3, 2


def soft_inputs(kind='random', B=2, N=5, in_dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, in_dim, generator=g)
    P = torch.softmax(torch.randn(B, N, T, generator=g) * 2, -1)
    adj = torch.rand(B, N, N, generator=g)
    E = torch.softmax(torch.randn(B, N, N, R, generator=g) * 2, -1)
    if kind == 'gated_rows':  # rows 0 and 1 have no attention mass at all
        adj[:, :2] = 0
    if kind == 'zero_adj':
        adj.zero_()
    if kind == 'sparse':
        adj = (adj > 0.6).float()
        P = F.one_hot(P.argmax(-1), T).float()
    if kind == 'one_node':
        x, P, adj, E = x[:, :1], P[:, :1], adj[:, :1, :1], E[:, :1, :1]
    return x, P, adj, E


def grads_of(fn, module, inputs, weight):
    for t in list(module.parameters()) + inputs:
        t.grad = None
    out = fn(*inputs)
    (out * weight).sum().backward()
    return out, [t.grad.clone() if t.grad is not None else torch.zeros_like(t)
                 for t in list(module.parameters()) + inputs]


@pytest.mark.parametrize('kind', ['random', 'gated_rows', 'zero_adj',
                                  'sparse', 'one_node'])
@pytest.mark.parametrize('use_norm,out_dim', [(True, 8), (False, 8),
                                              (True, 12)])
def test_matches_per_pair_spec(kind, use_norm, out_dim):
    layer = DifferentiableDenseHGTConv(8, out_dim, T, R, 2 if out_dim == 8
                                       else 3, use_norm=use_norm)
    randomize_(layer).eval()
    inputs = [t.clone().requires_grad_() for t in soft_inputs(kind)]
    weight = torch.randn(*inputs[0].shape[:2], out_dim)
    out, got = grads_of(layer, layer, inputs, weight)
    ref, want = grads_of(lambda *a: spec_legacy(layer, *a), layer, inputs,
                         weight)
    assert torch.allclose(out, ref, atol=1e-4, rtol=0)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-4, rtol=0)
    if kind == 'gated_rows':  # the gate cut the message: update of agg = 0
        zero = spec_legacy(layer, inputs[0], inputs[1],
                           torch.zeros_like(inputs[2]), inputs[3])
        assert torch.allclose(out[:, :2], zero[:, :2], atol=1e-5)


@pytest.mark.parametrize('kind', ['random', 'gated_rows', 'one_node'])
def test_loop_form_matches_vectorized(kind):
    loop = randomize_(LoopDifferentiableDenseHGTConv(8, 8, T, R, 2)).eval()
    fast = DifferentiableDenseHGTConv(8, 8, T, R, 2).eval()
    fast.load_state_dict(loop.state_dict(), strict=True)
    inputs = soft_inputs(kind)
    assert torch.allclose(loop(*inputs), fast(*inputs), atol=1e-4)


def test_initialisation_is_the_originals():
    torch.manual_seed(0)
    layer = DifferentiableDenseHGTConv(16, 16, 6, 5, 4)
    d = 4
    # xavier_uniform_ on [R, H, d, d]: fan_in = H d d, fan_out = R d d
    bound = math.sqrt(6 / (4 * d * d + 5 * d * d))
    for w in (layer.relation_att, layer.relation_msg):
        assert float(w.detach().abs().max()) <= bound
        assert float(w.detach().abs().max()) > 0.95 * bound
    assert torch.equal(layer.relation_pri.detach(), torch.ones(5, 4))


def original_layer_state_dict(in_dim, out_dim, H, use_norm=True):
    """An original checkpoint's layout, from the spec's key table."""
    d = out_dim // H
    sd = {'relation_pri': torch.randn(R, H),
          'relation_att': torch.randn(R, H, d, d) * 0.3,
          'relation_msg': torch.randn(R, H, d, d) * 0.3,
          'skip': torch.randn(T)}
    for n, shape in (('k_linears', (out_dim, in_dim)),
                     ('q_linears', (out_dim, in_dim)),
                     ('v_linears', (out_dim, in_dim)),
                     ('a_linears', (out_dim, out_dim))):
        for t in range(T):
            sd[f'{n}.{t}.weight'] = torch.randn(shape) * 0.3
            sd[f'{n}.{t}.bias'] = torch.randn(out_dim) * 0.3
    if use_norm:
        for t in range(T):
            sd[f'norms.{t}.weight'] = torch.randn(out_dim)
            sd[f'norms.{t}.bias'] = torch.randn(out_dim)
    return sd


def test_original_checkpoints_load_strict():
    layer = DifferentiableDenseHGTConv(8, 8, T, R, 2)
    sd = original_layer_state_dict(8, 8, 2)
    layer.load_state_dict(sd, strict=True)
    model = DifferentiableHGT(8, 8, 6, T, R, n_heads=2, n_layers=2)
    msd = {'input_projection.weight': torch.randn(8, T),
           'input_projection.bias': torch.randn(8)}
    msd.update({f'layers.0.{k}': v for k, v in sd.items()})
    msd.update({f'layers.1.{k}': v
                for k, v in original_layer_state_dict(8, 6, 2).items()})
    model.load_state_dict(msd, strict=True)
    model.eval()
    _, P, adj, E = soft_inputs()
    h = P @ msd['input_projection.weight'].T + msd['input_projection.bias']
    for layer in model.layers:
        h = spec_legacy(layer, h, P, adj, E)
    out = model({'node_types': P, 'adj_matrix': adj, 'edge_types': E})
    assert out.shape == (2, 5, 6)
    assert torch.allclose(out, h, atol=1e-4)
    assert OptimizedDifferentiableHGT is DifferentiableHGT


@pytest.mark.parametrize('chunk_size', [1, 3, 'auto'])
def test_chunked_equals_unchunked(chunk_size):
    model = randomize_(DifferentiableHGT(8, 8, 8, T, R, n_heads=2,
                                         chunk_size=None)).eval()
    _, P, adj, E = soft_inputs(B=7)
    P.requires_grad_()
    data = {'node_types': P, 'adj_matrix': adj, 'edge_types': E}
    w = torch.randn(7, 5, 8)
    (model(data) * w).sum().backward()
    want_out, want_grad = model(data), P.grad.clone()
    P.grad = None
    model.chunk_size = chunk_size
    out = model(data)
    (out * w).sum().backward()
    assert torch.allclose(out, want_out, atol=1e-5)
    assert torch.allclose(P.grad, want_grad, atol=1e-5)


def test_layer_chunk_size():
    layer = randomize_(DifferentiableDenseHGTConv(8, 8, T, R, 2,
                                                  chunk_size=2)).eval()
    inputs = soft_inputs(B=5)
    chunked = layer(*inputs)
    layer.chunk_size = None
    assert torch.allclose(chunked, layer(*inputs), atol=1e-6)


def decoder_tuple(B=4, N=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, N, N, generator=g),
            torch.randn(B, N, N, 5, generator=g),
            torch.randn(B, N, 6, generator=g))


class _Tilde:
    def __init__(self, adj, edge, node):
        self.adj_matrices_special_diag = adj
        self.edge_atr_tensors = edge
        self.node_atr_matrices = node


class _Decoder:
    def __init__(self, *logits):
        self._tilde_structure = _Tilde(*logits)


def test_converter_reads_decoder_object_and_tuple():
    logits = decoder_tuple()
    a = convert_graphvae_to_differentiable(
        logits, generator=torch.Generator().manual_seed(1))
    b = convert_graphvae_to_differentiable(
        _Decoder(*logits), generator=torch.Generator().manual_seed(1))
    for key in ('adj_matrix', 'edge_types', 'node_types'):
        assert torch.equal(a[key], b[key])
    assert a['batch_size'] == 4 and a['max_nodes'] == 8
    assert a['family_features'] is None
    assert torch.equal(a['adj_matrix'], torch.sigmoid(logits[0]))
    assert torch.allclose(a['node_types'].sum(-1), torch.ones(4, 8))


def test_converter_noise_is_reproducible_and_optional():
    logits = decoder_tuple()
    runs = [convert_graphvae_to_differentiable(
        logits, generator=torch.Generator().manual_seed(s))['node_types']
        for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    plain = convert_graphvae_to_differentiable(logits, False, 0.5)
    assert torch.allclose(plain['node_types'],
                          torch.softmax(logits[2] / 0.5, -1))


def test_converter_hard_is_one_hot_with_soft_gradients():
    logits = [t.clone().requires_grad_() for t in decoder_tuple()]
    w = torch.randn(4, 8, 6)
    hard = create_differentiable_hgt_data(
        logits, hard=True, generator=torch.Generator().manual_seed(3))
    soft = create_differentiable_hgt_data(
        logits, hard=False, generator=torch.Generator().manual_seed(3))
    nt = hard['node_types']
    assert torch.equal(nt, F.one_hot(soft['node_types'].argmax(-1),
                                     6).float())
    g_hard, = torch.autograd.grad((nt * w).sum(), logits[2])
    g_soft, = torch.autograd.grad((soft['node_types'] * w).sum(), logits[2])
    assert torch.allclose(g_hard, g_soft)
    feats = torch.randn(4, 3)
    data = create_differentiable_hgt_data(logits, feats)
    assert data['family_features'] is feats


@pytest.mark.parametrize('case,exc,match', [
    ('rte', ValueError, "'use_RTE=True' is not supported"),
    ('nan', ValueError, "'node_features' contains NaN"),
    ('shape', ValueError, "'adj_matrix_soft' must have shape"),
    ('types', ValueError, "'node_types_soft' rows .* sum to 1"),
    ('prob', ValueError, "'adj_matrix_soft' must hold probabilities"),
    ('dim', ValueError, "'node_features'.*in_dim"),
    ('dtype', TypeError, "'node_features' is torch.float64 but"),
    ('feats', ValueError, "'family_features' must have 4 rows"),
    ('decoder', TypeError, "'decoder' must be"),
    ('temperature', ValueError, "'temperature' must be positive"),
])
def test_errors(case, exc, match):
    x, P, adj, E = soft_inputs()
    with pytest.raises(exc, match=match):
        if case == 'rte':
            DifferentiableDenseHGTConv(8, 8, T, R, 2, use_RTE=True)
        elif case == 'feats':
            create_differentiable_hgt_data(decoder_tuple(), torch.randn(3, 2))
        elif case == 'decoder':
            convert_graphvae_to_differentiable(object())
        elif case == 'temperature':
            create_differentiable_hgt_data(decoder_tuple(), temperature=0)
        else:
            layer = DifferentiableDenseHGTConv(8, 8, T, R, 2)
            if case == 'nan':
                x[0, 0, 0] = float('nan')
            if case == 'shape':
                adj = adj[:, :, :3]
            if case == 'types':
                P = P * 0.5
            if case == 'prob':
                adj = adj + 1
            if case == 'dim':
                x = x[..., :3]
            if case == 'dtype':
                x = x.double()
            layer(x, P, adj, E)


@pytest.mark.parametrize('device,dtype', AUTOCAST)
def test_autocast_finite_and_close(device, dtype):
    layer = DifferentiableDenseHGTConv(16, 16, T, R, 2).eval()
    assert_autocast_close(layer, soft_inputs(in_dim=16, B=3), device, dtype)
