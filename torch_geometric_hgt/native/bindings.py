"""The C signatures of the kernels, for :mod:`ctypes`."""
import ctypes
from pathlib import Path

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def load(path: Path, c_real) -> ctypes.CDLL:
    """The library at ``path`` with every kernel's C signature (its
    real type ``c_real``)."""
    lib = ctypes.CDLL(str(path))
    rows = [_i64, _int, _i64, _i64, _ptr, _ptr, _ptr, c_real] + [_ptr] * 5
    lib.update_fwd.argtypes = rows + [c_real, _ptr, _ptr, _ptr]
    lib.update_bwd.argtypes = rows + [_ptr] * 7
    lib.typed_bwd.argtypes = [_i64, _int] + [_i64] * 3 + [_ptr] * 8
    lib.dropout_mask.argtypes = [_i64, _int, ctypes.c_uint64,
                                 ctypes.c_uint64, _ptr]
    shape = [_i64, _int] + [_i64] * 4
    lib.attn_fwd.argtypes = shape + [_ptr] * 6 + [_int, _ptr]
    lib.attn_bwd.argtypes = shape + [_ptr] * 13
    lib.update_fwd.restype = lib.update_bwd.restype = ctypes.c_int
    lib.attn_fwd.restype = lib.attn_bwd.restype = ctypes.c_int
    lib.typed_bwd.restype = ctypes.c_int
    lib.dropout_mask.restype = None
    return lib
