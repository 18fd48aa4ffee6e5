"""Whether the kernels run: the switch (:func:`enabled`, the environment)
and the library, built once per process on first use."""
import contextlib
import ctypes
import functools
import os
import threading
import warnings
from typing import Dict, Iterator, Optional

import torch
from torch import Tensor

from torch_geometric_hgt.native import build
from torch_geometric_hgt.native.bindings import load

_LIBRARY_LOCK = threading.Lock()
_ENABLED = [True]


def library() -> Optional[Dict[torch.dtype, ctypes.CDLL]]:
    """The compiled kernels per dtype, or ``None`` where they are switched
    off or cannot be built (warns once why). Threads that ask at once (the
    dense layer's chunk workers, say) wait for one build."""
    if not _ENABLED[0]:
        return None
    with _LIBRARY_LOCK:
        return load_all()


def is_available() -> bool:
    """Whether the kernels run (switched on, and built or buildable here;
    builds them if need be)."""
    return library() is not None


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Switches the kernels on or off for the ``with`` block, in every
    thread (``TORCH_GEOMETRIC_HGT_NATIVE=0`` switches them off for the
    process). Results agree either way to float round-off, and dropout
    draws the same masks.

    Example::

        with native.enabled(False):
            out = layer(x, P, adj, E, mask)  # the torch code
    """
    before = _ENABLED[0]
    _ENABLED[0] = bool(flag)
    try:
        yield
    finally:
        _ENABLED[0] = before


@functools.lru_cache(maxsize=None)
def load_all() -> Optional[Dict[torch.dtype, ctypes.CDLL]]:
    """The kernels per dtype, built at the first call (``None`` where
    switched off by the environment or not buildable); cached."""
    if os.environ.get('TORCH_GEOMETRIC_HGT_NATIVE', '1') == '0':
        return None
    cc = build.compiler()
    if cc is None:
        warnings.warn("torch_geometric_hgt: no C compiler found (set CC to "
                      "one), so the dense layer runs its torch code; the "
                      "results are the same, the C kernels only faster")
        return None
    try:
        return {dtype: load(build.build_library(cc, real), c_real)
                for dtype, (real, c_real) in build.REALS.items()}
    except OSError as e:
        warnings.warn(f"torch_geometric_hgt: the C kernels of the dense "
                      f"backward did not build ({str(e)[:500]}); using the "
                      f"torch code instead")
        return None


def usable(*tensors: Tensor) -> bool:
    """Whether the kernels run on these tensors: all on CPU, float32 or
    float64, and the library built."""
    return all(t.device.type == 'cpu' and t.dtype in
               (torch.float32, torch.float64) for t in tensors) and \
        library() is not None
