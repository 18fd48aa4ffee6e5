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
from typing import Dict, List, Sequence

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


class BufferPool:
    r"""Buffers kept for reuse, by device, dtype and size.

    :meth:`empty` returns a view of a kept buffer whose memory nothing
    references any more (no tensor, view or autograd graph), else of a new
    one that is then kept. Only CPU buffers of at least
    :data:`MIN_BYTES` are kept; others are plain :func:`torch.empty`. Safe
    across threads. :meth:`clear` drops the kept buffers (their memory
    returns once the last view is gone).

    Args:
        max_per_size (int, optional): Buffers kept per (device, dtype,
            size); more are allocated plainly. (default: :obj:`8`)
        min_bytes (int, optional): Smaller buffers are not kept.
            (default: :data:`MIN_BYTES`)
    """
    def __init__(self, max_per_size: int = 8, min_bytes: int = MIN_BYTES):
        self.max_per_size = max_per_size
        self.min_bytes = min_bytes
        self._kept: Dict[tuple, List[tuple]] = {}
        self._lock = threading.Lock()

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
        key = (device, dtype, numel, torch.is_inference_mode_enabled())
        with self._lock:
            kept = self._kept.setdefault(key, [])
            for buf, ref, idle in kept:
                if _use_count(ref.cdata) <= idle:  # only the pool holds it
                    return buf.view(shape)
            buf = torch.empty(numel, dtype=dtype, device=device)
            if len(kept) < self.max_per_size:
                ref = StorageWeakRef(buf.untyped_storage())
                # ``buf`` and the Python storage object PyTorch keeps
                kept.append((buf, ref, _use_count(ref.cdata)))
            return buf.view(shape)

    def zeros(self, shape: Sequence[int], dtype: torch.dtype,
              device: torch.device) -> Tensor:
        return self.empty(shape, dtype, device).zero_()

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()

    @property
    def nbytes(self) -> int:
        """Bytes of the kept buffers."""
        with self._lock:
            return sum(buf.numel() * buf.element_size()
                       for kept in self._kept.values() for buf, _, _ in kept)

    # copies and pickles (``copy.deepcopy(model)``, ``torch.save``) start
    # empty: buffers are scratch memory, the lock cannot be pickled
    def __getstate__(self) -> dict:
        return {'max_per_size': self.max_per_size,
                'min_bytes': self.min_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.nbytes / 2**20:.0f} MB)'
