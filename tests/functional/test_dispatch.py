"""The one dispatcher: which backend, pair layout and layer route run."""
import pytest
import torch

from torch_geometric_hgt.functional import dispatch

CPU, CUDA = torch.device('cpu'), torch.device('cuda')


def test_auto_backend_rule():
    assert dispatch.select_backend('auto', CPU, 10) == 'ultrafast'
    assert dispatch.select_backend('auto', CUDA, 10) == 'vectorized'
    limit = dispatch.CUDA_VECTORIZED_MAX_EDGES
    assert dispatch.select_backend('auto', CUDA, limit) == 'vectorized'
    assert dispatch.select_backend('auto', CUDA, limit + 1) == 'ultrafast'


@pytest.mark.parametrize('backend', dispatch.BACKENDS)
def test_masks_take_the_vectorized_backend(backend):
    # it alone differentiates with respect to the masks
    assert dispatch.select_backend(backend, CPU, 10, masked=True) == \
        'vectorized'
    if backend != 'auto':
        assert dispatch.select_backend(backend, CPU, 10) == backend


def test_bad_backend():
    with pytest.raises(ValueError, match="'backend' must be one of"):
        dispatch.check_backend('fast')


def test_pair_layout():
    assert dispatch.pair_layout(10, 3, 30, blocks=False) == 'dense'
    assert dispatch.pair_layout(10, 3, 29, blocks=False) == 'compact'
    assert dispatch.pair_layout(10, 3, 0, blocks=False) == 'compact'
    assert dispatch.pair_layout(1, 1, 0, blocks=False) == 'dense'
    assert dispatch.pair_layout(10, 3, 5, blocks=True) == 'blocks'


@pytest.mark.parametrize('dtype,weight_dtype,use_rte,pooled,autocast,want', [
    (torch.float32, torch.float32, False, True, False, 'pooled'),
    (torch.float64, torch.float64, False, True, False, 'pooled'),
    (torch.float32, torch.float32, False, False, False, 'edge'),
    (torch.float32, torch.float32, True, True, False, 'edge'),
    (torch.float32, torch.float64, False, True, False, 'edge'),
    (torch.bfloat16, torch.bfloat16, False, True, False, 'edge'),
    (torch.float32, torch.float32, False, True, True, 'edge'),
])
def test_layer_route_ultrafast(dtype, weight_dtype, use_rte, pooled,
                               autocast, want):
    x = torch.zeros(2, 2, dtype=dtype)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        got = dispatch.layer_route('ultrafast', x, use_rte, pooled,
                                   weight_dtype)
    assert got == want


def test_layer_route_others():
    x = torch.zeros(2, 2)
    assert dispatch.layer_route('memory_efficient', x, True, False) == \
        'target_chunked'
    assert dispatch.layer_route('vectorized', x, False, True) == 'edge'


@pytest.mark.parametrize('backend', ['ultrafast', 'memory_efficient'])
def test_edges_per_chunk(backend):
    cpu = dispatch.CPU_CHUNK_SIZE[backend]
    assert dispatch.edges_per_chunk('auto', backend, CPU, 10) == cpu
    assert dispatch.edges_per_chunk('auto', backend, CUDA, 10) == \
        dispatch.CUDA_CHUNK_SIZE
    assert dispatch.edges_per_chunk(None, backend, CPU, 10) == 10
    assert dispatch.edges_per_chunk(None, backend, CPU, 0) == 1
    assert dispatch.edges_per_chunk(7, backend, CUDA, 10) == 7
