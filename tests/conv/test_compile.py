"""torch.compile(fullgraph=True, dynamic=True) equals eager."""
import pytest
import torch
from conftest import DEVICES, R, T, make_graph, randomize_

from torch_geometric_hgt.conv import CONVS

COMPILABLE = sorted(set(CONVS) - {'loop'})  # the loop reference syncs


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', COMPILABLE)
def test_compile_equals_eager(name, device):
    torch._dynamo.reset()
    layer = randomize_(CONVS[name](8, 8, T, R, 2, use_RTE=True,
                                   max_len=10)).eval().to(device)
    compiled = torch.compile(layer, fullgraph=True, dynamic=True)
    for seed, kind in enumerate(['random', 'repeated']):  # two sizes
        x, node_type, edge_index, edge_type, edge_time = make_graph(
            kind, seed=seed)
        x = x[:11 + seed]
        node_type = node_type[:11 + seed]
        keep = (edge_index < x.size(0)).all(0)
        args = [t.to(device) for t in (x, node_type, edge_index[:, keep],
                                       edge_type[keep], edge_time[keep])]
        assert torch.allclose(compiled(*args), layer(*args), atol=1e-5)
