"""The one dispatcher: which backend, pair layout and layer route run,
and what a memory budget lets run."""
import json
import os
import subprocess
import sys

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


# 20k nodes, 400k edges, 5 relations, 4 heads of 16, float32, backward
WORK = dispatch.Workload(20000, 400000, 5, 4, 16, 4, True)


def need(backend, chunk='auto', work=WORK):
    return dispatch.choice_memory(
        dispatch.choose(backend, chunk, CPU, work), work)


def test_working_memory_orders_the_backends():
    # what the budget's fallback order assumes: each backend leaner than
    # the one before it, and backward needing more than forward alone
    assert need('vectorized') > need('ultrafast') > need('memory_efficient')
    for backend in ('vectorized', 'ultrafast', 'memory_efficient'):
        assert need(backend) > need(backend, work=WORK._replace(grad=False))
        assert need(backend, work=WORK._replace(num_edges=800000)) > \
            need(backend)
    assert need('memory_efficient', 4096) < need('memory_efficient')


def test_no_budget_changes_nothing():
    for backend in dispatch.BACKENDS:
        got = dispatch.choose(backend, 'auto', CPU, WORK)
        assert got.backend == dispatch.select_backend(backend, CPU,
                                                      WORK.num_edges)
        assert got.chunk == dispatch.edges_per_chunk(
            'auto', got.backend, CPU, WORK.num_edges)


def test_budget_takes_the_fastest_backend_that_fits():
    fast = need('ultrafast')
    assert dispatch.choose('auto', 'auto', CPU, WORK,
                           memory_budget=fast) == dispatch.choose(
                               'auto', 'auto', CPU, WORK)
    floor = need('ultrafast', dispatch.MIN_CHUNK_SIZE)
    got = dispatch.choose('auto', 'auto', CPU, WORK, memory_budget=floor)
    assert got.backend == 'ultrafast' and got.chunk < \
        dispatch.CPU_CHUNK_SIZE['ultrafast']
    got = dispatch.choose('auto', 'auto', CPU, WORK,
                          memory_budget=floor - 1)
    assert got == ('memory_efficient', dispatch.CPU_CHUNK_SIZE[
        'memory_efficient'], 'dense')
    # on CUDA the order starts at 'vectorized' below its edge limit
    work = WORK._replace(num_edges=200000)
    big = need('vectorized', work=work)
    assert dispatch.choose('auto', 'auto', CUDA, work,
                           memory_budget=big).backend == 'vectorized'
    assert dispatch.choose('auto', 'auto', CUDA, work,
                           memory_budget=big - 1).backend == 'ultrafast'


def test_budget_shrinks_an_automatic_chunk():
    lean = need('memory_efficient')
    got = dispatch.choose('auto', 'auto', CPU, WORK, memory_budget=lean - 1)
    assert got.backend == 'memory_efficient'
    assert dispatch.MIN_CHUNK_SIZE <= got.chunk < \
        dispatch.CPU_CHUNK_SIZE['memory_efficient']
    assert need('memory_efficient', got.chunk) <= lean - 1
    assert need('memory_efficient', got.chunk * 2) > lean - 1


@pytest.mark.parametrize('backend,chunk_size', [
    ('auto', 'auto'), ('ultrafast', 'auto'), ('memory_efficient', 16384),
    ('vectorized', 'auto'),
])
def test_budget_nothing_fits(backend, chunk_size):
    with pytest.raises(ValueError, match="'memory_budget' \\(1000 bytes\\) "
                       "is below what this call needs"):
        dispatch.choose(backend, chunk_size, CPU, WORK, memory_budget=1000)


def test_budget_keeps_a_named_backend_and_masks():
    fast = need('ultrafast')
    assert dispatch.choose('ultrafast', 'auto', CPU, WORK,
                           memory_budget=fast).backend == 'ultrafast'
    with pytest.raises(ValueError, match="backend 'ultrafast'"):
        dispatch.choose('ultrafast', 32768, CPU, WORK,
                        memory_budget=fast - 1)
    # masks need the vectorized backend, budget or not
    with pytest.raises(ValueError, match="backend 'vectorized'"):
        dispatch.choose('auto', 'auto', CPU, WORK, masked=True,
                        memory_budget=fast)


@pytest.mark.parametrize('budget', [0, -5, 1.5, '1GB', True])
def test_bad_memory_budget(budget):
    with pytest.raises(ValueError, match="'memory_budget' must be"):
        dispatch.check_memory_budget(budget)


# runs in a fresh process with glibc's mmap threshold fixed, so that the
# peak resident memory follows the live tensors; the peak counter is reset
# before each backend's measured call
PEAK_CHILD = '''
import json, torch
from torch_geometric_hgt.functional import dispatch, hgt_attention
N, E, R, H, d = 5000, 100000, 5, 4, 16
torch.manual_seed(0)
q, k, v = (torch.randn(N, H, d, requires_grad=True) for _ in range(3))
ei, et = torch.randint(0, N, (2, E)), torch.randint(0, R, (E, ))
att, msg = (torch.randn(R, H, d, d, requires_grad=True) for _ in range(2))
pri = torch.ones(R, H, requires_grad=True)
work = dispatch.Workload(N, E, R, H, d, 4, True)
def rss(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
out = {}
for backend in ('vectorized', 'ultrafast', 'memory_efficient'):
    def call():
        agg, _ = hgt_attention(q, k, v, ei, et, att, pri, msg,
                               backend=backend)
        agg.sum().backward()
        for t in (q, k, v, att, pri, msg):
            t.grad = None
    call()
    open('/proc/self/clear_refs', 'w').write('5')
    base = rss('VmRSS:')
    call()
    out[backend] = [rss('VmHWM:') - base, dispatch.choice_memory(
        dispatch.choose(backend, 'auto', q.device, work), work)]
print(json.dumps(out))
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='reads /proc')
def test_working_memory_bounds_the_measured_peak():
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    out = subprocess.run([sys.executable, '-c', PEAK_CHILD],
                         capture_output=True, text=True, env=env,
                         check=True)
    for backend, (peak, estimate) in json.loads(
            out.stdout.strip().splitlines()[-1]).items():
        # an upper bound, and not a loose one (peaks were 0.64-0.94x of
        # the estimates on the model's grid)
        assert 0.5 * estimate < peak <= estimate, backend
