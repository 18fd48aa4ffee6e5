"""checkpointed_chunks(): checkpointed chunks give plain autograd's values
and gradients, dropout included; run_workers(): chunks on worker
threads."""
import functools
import threading

import pytest
import torch
from conftest import randomize_
from test_dense_conv import R, T, soft_graph

from torch_geometric_hgt import DenseHGTConv
from torch_geometric_hgt.dense import planner
from torch_geometric_hgt.dense.planner import (checkpointed_chunks,
                                               chunk_workers,
                                               resolve_chunk_size,
                                               run_workers)

CPU = torch.device('cpu')


@pytest.mark.parametrize('size', [1, 2, 5])
def test_checkpoint_matches_plain_autograd_with_dropout(size):
    layer = randomize_(DenseHGTConv(8, 8, T, R, 2, dropout=0.5)).train()
    x, P, adj, E, mask = soft_graph('masked', B=5)
    inputs = [t.requires_grad_() for t in (x, P, adj, E)]
    wrt = inputs + list(layer.parameters())
    w = torch.randn(5, 5, 8)
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(0)  # same dropout masks; recompute must replay
        out = checkpointed_chunks(autograd(layer), (*inputs, mask), size,
                                  layer.parameters(), checkpoint=checkpoint)
        results.append((out, torch.autograd.grad((out * w).sum(), wrt)))
    (plain, plain_grads), (ckpt, ckpt_grads) = results
    assert (plain == 0).any()  # dropout is on
    assert torch.allclose(plain, ckpt)
    for a, b in zip(plain_grads, ckpt_grads):
        assert torch.allclose(a, b, atol=1e-6)


def autograd(layer):
    """The layer on one chunk by the autograd backend."""
    return functools.partial(layer.run_chunk, backend='autograd')


def test_checkpoint_keeps_the_caller_rng_stream():
    layer = DenseHGTConv(8, 8, T, R, 2, dropout=0.5).train()
    x, P, adj, E, mask = soft_graph('masked', B=4)
    x.requires_grad_()
    torch.manual_seed(1)
    checkpointed_chunks(autograd(layer), (x, P, adj, E, mask), 2,
                        layer.parameters()).sum().backward()
    after_backward = torch.rand(3)
    torch.manual_seed(1)
    with torch.no_grad():
        checkpointed_chunks(autograd(layer), (x, P, adj, E, mask), 2,
                            layer.parameters())
    assert torch.equal(after_backward, torch.rand(3))


@pytest.mark.parametrize('device,auto', [('cpu', 256), ('cuda', 4096),
                                         ('meta', 256)])
@pytest.mark.parametrize('B', [1, 300, 5000])
def test_auto_chunk_size_depends_on_the_device(device, auto, B):
    # no GPU needed: only the device type is read
    size = resolve_chunk_size('auto', B, torch.device(device))
    assert size == min(auto, B)
    assert resolve_chunk_size(7, B, torch.device(device)) == 7
    assert resolve_chunk_size(None, B, torch.device(device)) == B


@pytest.mark.parametrize('threads,chunks,device,want', [
    (2, 5, 'cpu', 2), (4, 3, 'cpu', 3), (2, 1, 'cpu', 1), (1, 5, 'cpu', 1),
    (2, 5, 'cuda', 1), (2, 5, 'meta', 1)])
def test_one_worker_per_thread_and_chunk_on_cpu_only(
        threads, chunks, device, want, monkeypatch):
    monkeypatch.setattr(torch, 'get_num_threads', lambda: threads)
    assert chunk_workers(chunks, torch.device(device)) == want


def test_no_workers_where_threads_share_one_count(monkeypatch):
    monkeypatch.setattr(planner, '_per_thread_counts', lambda: False)
    assert chunk_workers(5, CPU) == 1


@pytest.mark.usefixtures('two_threads')
def test_workers_take_fixed_shares_on_one_thread_each_and_restore():
    got = run_workers(list(range(7)), lambda share: (
        share, torch.get_num_threads(), threading.get_ident()), CPU)
    assert [g[0] for g in got] == [[0, 2, 4, 6], [1, 3, 5]]
    assert [g[1] for g in got] == [1, 1]
    assert len({g[2] for g in got} | {threading.get_ident()}) == 3
    assert torch.get_num_threads() == 2
    # a thread started later gets the caller's count, not the workers'
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert later == [2]


@pytest.mark.usefixtures('two_threads')
@pytest.mark.parametrize('mode', ['grad', 'no_grad', 'inference'])
def test_workers_run_in_the_callers_grad_mode(mode):
    context = {'grad': torch.enable_grad, 'no_grad': torch.no_grad,
               'inference': torch.inference_mode}[mode]
    with context():
        got = run_workers([0, 1], lambda share: (
            torch.is_grad_enabled(), torch.is_inference_mode_enabled()), CPU)
    assert got == [(mode == 'grad', mode == 'inference')] * 2


@pytest.mark.usefixtures('two_threads')
def test_a_workers_error_reaches_the_caller_and_threads_are_restored():
    def work(share):
        if 1 in share:
            raise ValueError('chunk 1 failed')
        return share

    with pytest.raises(ValueError, match='chunk 1 failed'):
        run_workers([0, 1, 2], work, CPU)
    assert torch.get_num_threads() == 2
