"""Every sparse layer against the per-edge spec reference: values, attention
and gradients (inputs and every parameter) on awkward graphs."""
import pytest
import torch
from conftest import (DEVICES, GRAPH_KINDS, R, T,
                      assert_training_step_repeats, make_graph, randomize_)
from reference import spec_sparse

from torch_geometric_hgt.conv import CONVS

LAYERS = sorted(set(CONVS) - {'loop'}) + ['loop']
ATOL = 1e-4


def _grads(module, inputs):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in list(module.parameters()) + inputs]


def _zero(module, inputs):
    for t in list(module.parameters()) + inputs:
        t.grad = None


@pytest.mark.parametrize('name', LAYERS)
@pytest.mark.parametrize('kind', GRAPH_KINDS)
@pytest.mark.parametrize('use_norm,use_RTE,out_dim', [
    (True, False, 8), (False, False, 8), (True, True, 8), (False, True, 12)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
# masks in training, none in eval: each route of each layer sees both
# modes and both mask states (the core's matrix crosses masks fully)
@pytest.mark.parametrize('train,masked', [(False, False), (True, True)])
def test_matches_spec(name, kind, use_norm, use_RTE, out_dim, dtype, train,
                      masked):
    """Every front end x graph x options x dtype x mode/mask: output,
    attention and the gradients of the input, every parameter and the
    mask equal the spec's (in training without dropout, which the spec
    draws differently)."""
    x, node_type, edge_index, edge_type, edge_time = make_graph(kind)
    layer = CONVS[name](8, out_dim, T, R, n_heads=4 if out_dim == 8 else 3,
                        use_norm=use_norm, use_RTE=use_RTE, max_len=10,
                        dropout=0.0)
    layer = randomize_(layer).to(dtype).train(train)
    edge_time = edge_time if use_RTE else None
    x = x.to(dtype).requires_grad_()
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(edge_type.numel(), generator=g, dtype=dtype) \
        .requires_grad_() if masked else None
    extra = [mask] if masked else []

    out, att = layer(x, node_type, edge_index, edge_type, edge_time,
                     return_attention_weights=True, edge_mask=mask)
    weight = torch.randn(out.shape, generator=g, dtype=dtype)
    (out * weight).sum().backward()
    got = _grads(layer, [x] + extra)
    _zero(layer, [x] + extra)
    ref, ref_att = spec_sparse(layer, x, node_type, edge_index, edge_type,
                               edge_time, mask)
    if ref.requires_grad:
        (ref * weight).sum().backward()
    want = _grads(layer, [x] + extra)

    atol = ATOL if dtype == torch.float32 else 1e-10
    assert out.shape == (x.size(0), out_dim) and out.dtype == dtype
    assert torch.allclose(out, ref, atol=atol, rtol=0)
    assert torch.allclose(att, ref_att, atol=atol, rtol=0)
    assert layer.att is att
    for g_, w in zip(got, want):
        assert torch.allclose(g_, w, atol=atol, rtol=0)


@pytest.mark.parametrize('name', LAYERS)
def test_masks_act_and_are_checked(name):
    """A mask changes the output (so the matrix above can fail) and one
    of the wrong length is refused."""
    x, node_type, edge_index, edge_type, edge_time = make_graph('random')
    layer = randomize_(CONVS[name](8, 8, T, R, 4)).eval()
    mask = torch.rand(edge_type.numel())
    plain = layer(x, node_type, edge_index, edge_type)
    masked = layer(x, node_type, edge_index, edge_type, edge_mask=mask)
    assert not torch.allclose(plain, masked, atol=ATOL)
    with pytest.raises(ValueError, match="'edge_mask'"):
        layer(x, node_type, edge_index, edge_type,
              edge_mask=torch.ones(edge_type.numel() + 1))


@pytest.mark.parametrize('name', LAYERS)
def test_dropout_only_in_training(name):
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    layer = CONVS[name](8, 8, T, R, 2, dropout=0.5)
    layer.eval()
    assert torch.equal(layer(x, node_type, edge_index, edge_type),
                       layer(x, node_type, edge_index, edge_type))
    layer.train()
    torch.manual_seed(0)
    a = layer(x, node_type, edge_index, edge_type)
    assert not torch.allclose(a, layer.eval()(x, node_type, edge_index,
                                              edge_type))


@pytest.mark.parametrize('name', LAYERS)
def test_attention_not_kept_unless_asked(name):
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    layer = CONVS[name](8, 8, T, R, 2).eval()
    out = layer(x, node_type, edge_index, edge_type)
    assert isinstance(out, torch.Tensor) and layer.att is None


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', LAYERS)
def test_deterministic_given_seed(name, device):
    # large enough (3,000 nodes x 16) that CPU kernels split work between
    # threads: w[node_type]'s backward then summed rows in varying order
    g = torch.Generator().manual_seed(0)
    N, E, F = 3000, 12000, 16
    x = torch.randn(N, F, generator=g).to(device)
    inputs = [t.to(device) for t in (
        torch.randint(0, T, (N, ), generator=g),
        torch.randint(0, N, (2, E), generator=g),
        torch.randint(0, R, (E, ), generator=g))]

    def build():
        layer = CONVS[name](F, F, T, R, 2).train().to(device)
        return layer, lambda x: layer(x, *inputs), x
    assert_training_step_repeats(build, device, seed=3)


@pytest.mark.parametrize('name', LAYERS)
def test_bfloat16_autocast_close_and_finite(name):
    x, node_type, edge_index, edge_type, _ = make_graph('repeated',
                                                        in_dim=16)
    layer = CONVS[name](16, 16, T, R, 4).eval()
    x = x.requires_grad_()
    want = layer(x, node_type, edge_index, edge_type)
    w = torch.randn_like(want)
    want_dx, = torch.autograd.grad((want * w).sum(), x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got, att = layer(x, node_type, edge_index, edge_type,
                         return_attention_weights=True)
        got_dx, = torch.autograd.grad((got.float() * w).sum(), x)
    assert torch.isfinite(got).all() and torch.isfinite(got_dx).all()
    assert (got.float() - want).abs().max() < 0.1
    assert (got_dx - want_dx).abs().max() < 0.1 * want_dx.abs().max()
    # softmax accumulated in float32: every target's weights sum to 1
    sums = torch.zeros(x.size(0), 4).index_add_(0, edge_index[1],
                                                att.float())
    has_in = torch.bincount(edge_index[1], minlength=x.size(0)) > 0
    assert torch.allclose(sums[has_in], torch.ones_like(sums[has_in]),
                          atol=1e-2)
