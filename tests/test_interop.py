"""Weights move between PyG's HGTConv and every sparse layer."""
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import HGTConv

from torch_geometric_hgt.conv import CONVS


def hetero_data(seed=0, F=16):
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    sizes = {'author': 11, 'paper': 9, 'venue': 4, 'lonely': 3}
    for nt, n in sizes.items():
        data[nt].x = torch.randn(n, F, generator=g)

    def rand_edges(s, t, e):
        return torch.stack([torch.randint(0, sizes[s], (e, ), generator=g),
                            torch.randint(0, sizes[t], (e, ), generator=g)])
    data['author', 'writes', 'paper'].edge_index = rand_edges(
        'author', 'paper', 25)
    data['paper', 'rev_writes', 'author'].edge_index = rand_edges(
        'paper', 'author', 25)
    data['paper', 'cites', 'paper'].edge_index = rand_edges(
        'paper', 'paper', 30)  # self-loops and repeats likely
    data['paper', 'in', 'venue'].edge_index = rand_edges('paper', 'venue', 9)
    data['lonely', 'to', 'paper'].edge_index = rand_edges('lonely', 'paper', 2)
    return data


def random_pyg_conv(data, F=16, heads=4, seed=0):
    torch.manual_seed(seed)
    conv = HGTConv(F, F, data.metadata(), heads=heads)
    with torch.no_grad():
        for p in conv.parameters():
            p.normal_(0, 0.5)
    return conv


@pytest.mark.parametrize('name', sorted(CONVS))
def test_from_pyg_reproduces_pyg(name):
    data = hetero_data()
    conv = random_pyg_conv(data)
    want = conv(data.x_dict, data.edge_index_dict)
    layer = CONVS[name].from_pyg(conv)
    assert not layer.use_norm and not layer.training
    homo = data.to_homogeneous()
    out = layer(homo.x, homo.node_type, homo.edge_index, homo.edge_type)
    assert set(want) == {'author', 'paper', 'venue'}  # 'lonely' has no input
    for i, nt in enumerate(data.node_types):
        if nt in want:
            assert torch.allclose(out[homo.node_type == i], want[nt],
                                  atol=1e-4, rtol=0)


@pytest.mark.parametrize('name', sorted(CONVS))
def test_to_pyg_round_trip(name):
    data = hetero_data(seed=1)
    conv = random_pyg_conv(data, seed=1)
    layer = CONVS[name].from_pyg(conv)
    back = layer.to_pyg(data.metadata(), range(len(data.edge_types)))
    want = conv(data.x_dict, data.edge_index_dict)
    got = back(data.x_dict, data.edge_index_dict)
    for nt in want:
        assert torch.allclose(got[nt], want[nt], atol=1e-6)


def test_to_pyg_default_metadata_covers_every_type_pair():
    layer = CONVS['vectorized'](8, 8, 2, 3, 2, use_norm=False)
    conv = layer.to_pyg()
    assert len(conv.edge_types) == 2 * 3 * 2
    assert conv.node_types == ['0', '1']


def test_to_pyg_rejects_norm():
    with pytest.raises(ValueError, match='use_norm=False'):
        CONVS['vectorized'](8, 8, 2, 3, 2).to_pyg()


def test_from_pyg_rejects_other_modules():
    with pytest.raises(TypeError, match="'conv'"):
        CONVS['vectorized'].from_pyg(torch.nn.Linear(2, 2))
