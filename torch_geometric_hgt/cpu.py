"""CPU tuning that PyTorch leaves to the user."""
import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Makes glibc's ``malloc`` keep freed memory for reuse instead of
    returning it to the operating system, for this whole process.

    PyTorch's CPU tensors come straight from ``malloc``; glibc serves blocks
    above 32 MB with fresh ``mmap`` pages and unmaps them on free, so every
    large temporary (node features of 100k nodes, a chunk of soft graphs)
    pays one page fault per 4 KB again at every use. On the 2-core machine
    of ``benchmarks/RESULTS.md`` this halves forward times of the fused
    sparse layers and of :class:`~torch_geometric_hgt.DenseHGTConv`; the
    price is a higher resident set (freed memory stays mapped, ~20-30%
    higher peaks there). Same effect as starting Python with
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>``; ``jemalloc`` or
    ``tcmalloc`` via ``LD_PRELOAD`` are alternatives.

    Returns:
        bool: ``True`` if applied, ``False`` where the C library is not
        glibc (nothing changes there).
    """
    name = ctypes.util.find_library('c')
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, 'mallopt') or not hasattr(libc,
                                                   'gnu_get_libc_version'):
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and \
        bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
