"""BufferPool hands a buffer out again only once nothing references its
memory."""
import copy
import pickle

import pytest
import torch

from conftest import R, T, make_graph, randomize_

from torch_geometric_hgt import UltraFastHGTConv, VectorizedHGTConv, buffers
from torch_geometric_hgt.buffers import BufferPool, size_class

SHAPE, F32 = (64, 32), torch.float32


def take(pool):
    return pool.empty(SHAPE, F32, 'cpu')


def test_reuses_a_released_buffer():
    pool = BufferPool(min_bytes=0)
    ptr = take(pool).data_ptr()
    assert take(pool).data_ptr() == ptr
    assert pool.nbytes == 64 * 32 * 4


@pytest.mark.parametrize('holder', ['tensor', 'view', 'view of a view',
                                    'autograd graph'])
def test_never_hands_out_memory_in_use(holder):
    pool = BufferPool(min_bytes=0)
    buf = take(pool)
    ptr = buf.data_ptr()
    if holder == 'view':
        keep = buf[1:]
    elif holder == 'view of a view':
        keep = buf.view(-1)[3:].view(1, -1)
    elif holder == 'autograd graph':
        w = torch.ones(SHAPE, requires_grad=True)
        keep = (w * buf.fill_(2.)).sum()  # mul saves the buffer
    else:
        keep = buf
    del buf
    other = take(pool)
    assert other.data_ptr() != ptr
    if holder == 'autograd graph':
        other.fill_(5.)
        keep.backward()
        assert torch.equal(w.grad, torch.full(SHAPE, 2.))
    del keep, other
    assert take(pool).data_ptr() == ptr  # released again


def test_small_and_non_cpu_buffers_are_plain():
    pool = BufferPool()  # default: only buffers of >= 1 MB are kept
    take(pool)
    assert pool.nbytes == 0
    big = pool.empty((512, 1024), F32, 'cpu')
    assert pool.nbytes == big.numel() * 4


def test_keeps_at_most_max_buffers():
    pool = BufferPool(max_buffers=2, min_bytes=0)
    held = [take(pool) for _ in range(4)]
    assert len({t.data_ptr() for t in held}) == 4
    assert pool.nbytes == 2 * 64 * 32 * 4


def test_smallest_free_buffer_that_fits():
    pool = BufferPool(min_bytes=0)
    big = pool.empty((64, 64), F32, 'cpu')
    small = take(pool)
    ptrs = big.data_ptr(), small.data_ptr()
    del big, small
    assert take(pool).data_ptr() == ptrs[1]
    assert pool.empty((64, 48), F32, 'cpu').data_ptr() == ptrs[0]
    assert pool.empty((64, 65), F32, 'cpu').data_ptr() not in ptrs


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_changing_sizes_stay_bounded(seed):
    """Mini-batches: every call a new size; the pool keeps at most
    max_buffers buffers, each the size class of a request, so its bytes
    stay under max_buffers times the class of the largest request."""
    pool = BufferPool(max_buffers=6, min_bytes=0)
    g = torch.Generator().manual_seed(seed)
    largest = size_class(999 * 8) * 4  # bytes of the largest class asked
    for _ in range(50):
        n = int(torch.randint(10, 1000, (), generator=g))
        held = [pool.empty((n, 8), F32, 'cpu') for _ in range(3)]
        del held
        assert len(pool) <= 6
        assert pool.nbytes <= 6 * largest
    assert len(pool) == 6


def test_without_the_storage_use_count_buffers_are_plain(monkeypatch):
    """The fallback where torch lacks its storage use count: nothing is
    kept, every request is fresh memory, and the pooled layer still
    equals its autograd path."""
    monkeypatch.setattr(buffers, '_use_count', None)
    pool = BufferPool(min_bytes=0)
    a = pool.empty((64, 32), F32, 'cpu')
    del a
    b = pool.empty((64, 32), F32, 'cpu')
    assert len(pool) == 0 and pool.nbytes == 0
    assert b.shape == (64, 32)
    x, node_type, edge_index, edge_type, _ = make_graph('repeated')
    m = randomize_(UltraFastHGTConv(x.size(1), 8, T, R, 2)).eval()
    m.pool = BufferPool(min_bytes=0)
    ref = VectorizedHGTConv(x.size(1), 8, T, R, 2).eval()
    ref.load_state_dict(m.state_dict())
    want = ref(x, node_type, edge_index, edge_type)
    got = m(x, node_type, edge_index, edge_type)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    assert len(m.pool) == 0


def test_zeros_and_clear():
    pool = BufferPool(min_bytes=0)
    take(pool).fill_(3.)
    assert torch.equal(pool.zeros(SHAPE, F32, 'cpu'), torch.zeros(SHAPE))
    pool.clear()
    assert pool.nbytes == 0


@pytest.mark.parametrize('dup', [copy.deepcopy,
                                 lambda p: pickle.loads(pickle.dumps(p))])
def test_copies_start_empty(dup):
    pool = BufferPool(max_buffers=3, min_bytes=0)
    kept = take(pool)
    new = dup(pool)
    assert new.nbytes == 0 and new.max_buffers == 3
    assert take(new).data_ptr() != kept.data_ptr()


def test_inference_mode_buffers_stay_apart():
    """Validation under ``torch.inference_mode()`` (Lightning's default)
    between training steps: its buffers are inference tensors, which
    autograd may not save or write outside that mode."""
    pool = BufferPool(min_bytes=0)
    with torch.inference_mode():
        assert take(pool).is_inference()
    t = take(pool)
    assert not t.is_inference()
    w = torch.ones(SHAPE, requires_grad=True)
    (w * t.fill_(2.)).sum().backward()
    assert torch.equal(w.grad, torch.full(SHAPE, 2.))
    with torch.inference_mode():
        assert take(pool).is_inference()


def test_size_classes():
    sizes = list(range(1, 5000)) + [10**6 + 1, 12_800_000]
    classes = [size_class(n) for n in sizes]
    assert all(n <= c <= max(n * 9 // 8, 16) for n, c in zip(sizes, classes))
    assert classes == sorted(classes)
    assert len(set(classes[2048:4095])) == 8  # 8 sizes per power of two
