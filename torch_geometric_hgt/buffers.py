"""Large CPU buffers a layer reuses across calls.

PyTorch's CPU tensors come straight from ``malloc``, and glibc serves every
block above 32 MB with fresh ``mmap`` pages that it unmaps again on free:
each large temporary pays one page fault per 4 KB at every call (on the
2-core VM of ``benchmarks/RESULTS.md``, 2-3x the layer's arithmetic).
A :class:`BufferPool` keeps such buffers alive with its layer and hands
one out again once nothing else holds its memory, so a layer's second
and later calls touch no fresh pages, without any process-wide setting.
"""
import threading
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

try:  # the storage reference count (what PyTorch's CUDA graph trees use)
    from torch.multiprocessing.reductions import StorageWeakRef
    _use_count = torch._C._storage_Use_Count
except (ImportError, AttributeError):  # pragma: no cover - older torch
    StorageWeakRef = _use_count = None

#: buffers smaller than this come from the allocator as usual (glibc's
#: heap serves them from memory it keeps)
MIN_BYTES = 1 << 20


def size_class(numel: int) -> int:
    """``numel`` rounded up to one of 8 sizes per power of two (at most
    ~12% more), so that inputs of nearby sizes share buffers. The tail
    past a request is never written, so it costs address space, not
    memory."""
    step = max(1 << max(numel.bit_length() - 4, 0), 1)
    return -(-numel // step) * step


class _Kept:
    __slots__ = ('buf', 'ref', 'idle', 'used')

    def __init__(self, buf: Tensor, used: int):
        self.buf, self.used = buf, used
        self.ref = StorageWeakRef(buf.untyped_storage())
        # ``buf`` and the Python storage object PyTorch keeps for it
        self.idle = _use_count(self.ref.cdata)

    def free(self) -> bool:
        return _use_count(self.ref.cdata) <= self.idle


class BufferPool:
    r"""Buffers kept for reuse, by device and dtype.

    :meth:`empty` returns a view of the smallest kept buffer that is large
    enough and whose memory nothing references any more (no tensor, view
    or autograd graph), else of a new one that is then kept. Past
    :obj:`max_buffers`, the least recently used are forgotten (their
    memory returns once their last view is gone), so inputs of changing
    sizes (mini-batches) keep the pool bounded: at most
    :obj:`max_buffers` buffers, none larger than the largest request. Only
    CPU buffers of at least :obj:`min_bytes` are kept; others are plain
    :func:`torch.empty`. Buffers made in :func:`torch.inference_mode` serve
    only that mode. Safe across threads; copies and pickles start empty.

    Args:
        max_buffers (int, optional): Buffers kept at most (per device,
            dtype and mode). (default: :obj:`48`)
        min_bytes (int, optional): Smaller buffers are not kept.
            (default: :data:`MIN_BYTES`)
    """
    def __init__(self, max_buffers: int = 48, min_bytes: int = MIN_BYTES):
        self.max_buffers = max_buffers
        self.min_bytes = min_bytes
        self._kept: Dict[tuple, List[_Kept]] = {}
        self._lock = threading.Lock()
        self._clock = 0

    def empty(self, shape: Sequence[int], dtype: torch.dtype,
              device: torch.device) -> Tensor:
        device = torch.device(device)
        numel = 1
        for n in shape:
            numel *= int(n)
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if device.type != 'cpu' or nbytes < self.min_bytes or \
                _use_count is None or torch.compiler.is_compiling():
            return torch.empty(shape, dtype=dtype, device=device)
        # inference tensors cannot be saved or written outside that mode
        key = (device, dtype, torch.is_inference_mode_enabled())
        with self._lock:
            self._clock += 1
            kept = self._kept.setdefault(key, [])
            fits = [k for k in kept if k.buf.numel() >= numel and k.free()]
            if fits:
                best = min(fits, key=lambda k: k.buf.numel())
                best.used = self._clock
                return best.buf[:numel].view(shape)
            buf = torch.empty(size_class(numel), dtype=dtype, device=device)
            kept.append(_Kept(buf, self._clock))
            if len(kept) > self.max_buffers:
                kept.sort(key=lambda k: k.used)
                del kept[:len(kept) - self.max_buffers]
            return buf[:numel].view(shape)

    def zeros(self, shape: Sequence[int], dtype: torch.dtype,
              device: torch.device) -> Tensor:
        return self.empty(shape, dtype, device).zero_()

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()

    def __len__(self) -> int:
        """Number of kept buffers."""
        with self._lock:
            return sum(len(kept) for kept in self._kept.values())

    @property
    def nbytes(self) -> int:
        """Bytes of the kept buffers."""
        with self._lock:
            return sum(k.buf.numel() * k.buf.element_size()
                       for kept in self._kept.values() for k in kept)

    # copies and pickles (``copy.deepcopy(model)``, ``torch.save``) start
    # empty: buffers are scratch memory, the lock cannot be pickled
    def __getstate__(self) -> dict:
        return {'max_buffers': self.max_buffers,
                'min_bytes': self.min_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.nbytes / 2**20:.0f} MB)'


class PoolOwner(torch.nn.Module):
    """A module whose :attr:`pool` (a :class:`BufferPool`, or :obj:`None`
    for none) is emptied when the module moves (``.to()``, ``.double()``,
    ...): its buffers belong to the old device or dtype."""
    pool: Optional[BufferPool] = None

    def _apply(self, fn, recurse: bool = True):
        if self.pool is not None:
            self.pool.clear()
        return super()._apply(fn, recurse)
