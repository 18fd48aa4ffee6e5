"""BufferPool hands a buffer out again only once nothing references its
memory."""
import copy
import pickle

import pytest
import torch

from torch_geometric_hgt.buffers import BufferPool

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


def test_caps_buffers_per_size():
    pool = BufferPool(max_per_size=2, min_bytes=0)
    held = [take(pool) for _ in range(4)]
    assert len({t.data_ptr() for t in held}) == 4
    assert pool.nbytes == 2 * 64 * 32 * 4


def test_zeros_and_clear():
    pool = BufferPool(min_bytes=0)
    take(pool).fill_(3.)
    assert torch.equal(pool.zeros(SHAPE, F32, 'cpu'), torch.zeros(SHAPE))
    pool.clear()
    assert pool.nbytes == 0


@pytest.mark.parametrize('dup', [copy.deepcopy,
                                 lambda p: pickle.loads(pickle.dumps(p))])
def test_copies_start_empty(dup):
    pool = BufferPool(max_per_size=3, min_bytes=0)
    kept = take(pool)
    new = dup(pool)
    assert new.nbytes == 0 and new.max_per_size == 3
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
