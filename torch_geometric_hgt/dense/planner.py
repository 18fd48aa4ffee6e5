"""Run a per-graph function over a batch in chunks of graphs."""
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, List, Optional, Sequence, TypeVar

import torch
from torch import Tensor

from torch_geometric_hgt.functional.dispatch import check_chunk_size
from torch_geometric_hgt.replay import ForwardState

#: graphs per chunk for ``chunk_size="auto"``, by device type. CPU: as fast
#: as larger chunks for N = 8 (large temporaries cost page faults) and small
#: in memory. CUDA: 256 is launch-bound; on an H200, 4096 ran the 2-layer
#: DenseHGT over 33,169 families 4.8x and DifferentiableHGT 8.4x faster.
AUTO_CHUNK = {'cpu': 256, 'cuda': 4096}


def resolve_chunk_size(chunk_size, batch_size: int,
                       device: torch.device) -> int:
    check_chunk_size(chunk_size)
    if chunk_size is None:
        return batch_size
    if chunk_size == 'auto':
        auto = AUTO_CHUNK.get(device.type, AUTO_CHUNK['cpu'])
        return min(auto, max(batch_size, 1))
    return chunk_size


def chunk_slices(batch_size: int, size: int) -> List[slice]:
    """The graph ranges of consecutive chunks of ``size`` graphs."""
    return [slice(start, start + size)
            for start in range(0, batch_size, size)]


Item, Result = TypeVar('Item'), TypeVar('Result')


@functools.lru_cache(maxsize=None)
def _per_thread_counts() -> bool:
    """Whether each thread has its own intra-op thread count (OpenMP
    backend; the native one has a single pool)."""
    return 'parallel backend: OpenMP' in torch.__config__.parallel_info()


def chunk_workers(num_chunks: int, device: torch.device) -> int:
    """How many workers :func:`run_workers` runs ``num_chunks`` chunks on:
    on CPU one per intra-op thread and at most one per chunk, else 1."""
    if device.type != 'cpu' or not _per_thread_counts():
        return 1
    return max(1, min(torch.get_num_threads(), num_chunks))


def run_workers(items: List[Item], work: Callable[[List[Item]], Result],
                device: torch.device) -> List[Result]:
    """``work(items[k::W])`` (the chunks) for the ``W`` workers of
    :func:`chunk_workers`, in worker order. With several, each runs on a
    thread of its own with one intra-op thread: on the 2-core CPU, two
    single-threaded chunks at once ran the dense model 9-11% faster than
    one chunk on two threads (small products scale poorly). The shares are
    fixed, so a sum over each worker's chunks rounds the same way in every
    run. The caller's grad and inference modes (thread-local) apply."""
    W = chunk_workers(len(items), device)
    if W == 1:
        return [work(items)]
    threads = torch.get_num_threads()
    ready = threading.Barrier(W + 1)
    grad, inference = (torch.is_grad_enabled(),
                       torch.is_inference_mode_enabled())

    def run(share: List[Item]) -> Result:
        # (first call initializes the thread's count from the global one,
        # which set_num_threads also sets, so the caller restores it)
        torch.get_num_threads()
        torch.set_num_threads(1)
        ready.wait()
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return work(share)

    with ThreadPoolExecutor(W) as pool:
        try:
            futures = [pool.submit(run, items[k::W]) for k in range(W)]
        except BaseException:  # (workers started would wait forever)
            ready.abort()
            raise
        try:
            ready.wait()
        finally:
            torch.set_num_threads(threads)
        return [f.result() for f in futures]


def _parts(tensors: Sequence[Optional[Tensor]], size: int):
    B = next(t for t in tensors if t is not None).size(0)
    for part in chunk_slices(B, size):
        yield part.start, [None if t is None else t[part] for t in tensors]


class _ChunkedCheckpoint(torch.autograd.Function):
    """``cat(fn(chunk) for chunk)`` keeping only the inputs; backward
    recomputes one chunk at a time (same RNG and autocast state) and writes
    its input gradients into one buffer per input. Autograd's own slicing
    would instead build a full-size zero gradient per chunk and input."""
    @staticmethod
    def forward(ctx, fn, size, n, *args):
        tensors, params = args[:n], args[n:]
        ctx.fn, ctx.size, ctx.n = fn, size, n
        ctx.state = ForwardState(
            next(t for t in tensors if t is not None).device)
        ctx.save_for_backward(*tensors, *params)
        with torch.no_grad():
            return torch.cat([fn(*part) for _, part in _parts(tensors, size)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved = ctx.saved_tensors
        tensors, params = saved[:ctx.n], saved[ctx.n:]
        need = ctx.needs_input_grad[3:]
        d_in = [torch.zeros_like(t) if t is not None and need[i] else None
                for i, t in enumerate(tensors)]
        d_par = [torch.zeros_like(p) if need[ctx.n + i] else None
                 for i, p in enumerate(params)]
        wrt_par = [p for p, d in zip(params, d_par) if d is not None]
        with ctx.state.replay():
            for start, part in _parts(tensors, ctx.size):
                part = [None if t is None else
                        t.detach().requires_grad_(d is not None)
                        for t, d in zip(part, d_in)]
                out = ctx.fn(*part)
                wrt = [t for t, d in zip(part, d_in) if d is not None]
                grads = torch.autograd.grad(
                    out, wrt + wrt_par, grad[start:start + out.size(0)],
                    allow_unused=True)
                it = iter(grads)
                for d, g in zip([d for d in d_in if d is not None], it):
                    if g is not None:
                        d[start:start + out.size(0)] = g
                for d, g in zip([d for d in d_par if d is not None], it):
                    if g is not None:
                        d += g
        return (None, None, None, *d_in, *d_par)


def checkpointed_chunks(fn: Callable[..., Tensor],
                        tensors: Sequence[Optional[Tensor]], chunk_size,
                        params: Iterable[Tensor] = (),
                        checkpoint: Optional[bool] = None) -> Tensor:
    """``fn(*tensors)`` computed on chunks of the leading (graph) dimension
    and concatenated; exact because graphs are independent.

    ``checkpoint``: recompute each chunk in backward so that only the
    inputs stay alive (default: whenever there is more than one chunk and
    gradients are on). ``params`` are the parameters ``fn`` uses; they get
    their gradients through the recomputation.
    """
    first = next(t for t in tensors if t is not None)
    B = first.size(0)
    size = resolve_chunk_size(chunk_size, B, first.device)
    if size >= B:
        return fn(*tensors)
    if checkpoint is None:
        checkpoint = torch.is_grad_enabled()
    if checkpoint and torch.is_grad_enabled():
        params: List[Tensor] = list(params)
        return _ChunkedCheckpoint.apply(fn, size, len(tensors), *tensors,
                                        *params)
    return torch.cat([fn(*part) for _, part in _parts(tensors, size)])
