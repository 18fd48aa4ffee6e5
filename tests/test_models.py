"""The HGT model stack."""
import pytest
import torch
from conftest import R, T, make_graph, randomize_
from test_interop import hetero_data

from torch_geometric_hgt.conv import CONVS
from torch_geometric_hgt.models import HGT


@pytest.mark.parametrize('name', sorted(CONVS))
def test_stack_equals_adapters_then_convs(name):
    x, node_type, edge_index, edge_type, _ = make_graph('random')
    model = randomize_(HGT(8, 8, T, R, n_heads=2, n_layers=2,
                           conv=name)).eval()
    h = torch.stack([
        torch.tanh(model.adapt_ws[int(t)](x[n]))
        for n, t in enumerate(node_type)
    ])
    for conv in model.gcs:
        assert isinstance(conv, CONVS[name])
        h = conv(h, node_type, edge_index, edge_type)
    out = model(x, node_type, edge_index, edge_type)
    assert torch.allclose(out, h, atol=1e-5)


def test_forward_hetero_splits_per_type_and_allows_per_type_dims():
    data = hetero_data()
    data['venue'].x = data['venue'].x[:, :5]
    dims = [data[nt].x.size(1) for nt in data.node_types]
    model = HGT(dims, 8, len(data.node_types), len(data.edge_types),
                n_heads=2).eval()
    out = model.forward_hetero(data)
    homo = data.to_homogeneous(node_attrs=[], edge_attrs=[])
    flat = model([data[nt].x for nt in data.node_types], homo.node_type,
                 homo.edge_index, homo.edge_type)
    assert list(out) == data.node_types
    assert torch.equal(torch.cat(list(out.values())), flat)
    assert out['venue'].shape == (4, 8)


def test_layer_norm_flags():
    model = HGT(8, 8, T, R, n_layers=3, prev_norm=True, last_norm=False)
    assert [c.use_norm for c in model.gcs] == [True, True, False]


def test_unknown_conv_name():
    with pytest.raises(ValueError, match="'conv' must be one of"):
        HGT(8, 8, T, R, conv='nope')
