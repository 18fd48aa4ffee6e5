"""Optional C kernels for the dense layer's hand-written backward: the
per-type soft update (``soft_update.c``: one pass over a node's ``[T, D]``
block where torch takes ~8 forward and ~15 backward passes over memory)
and the per-graph attention of 8-node graphs (``attention.c``: a graph's
scores, softmax and sums in registers where torch runs ~25 batched
operations over ``[H, b, 8, 8, R]`` tensors).

Built on first use with the system C compiler (about two seconds, no torch
headers; :mod:`~torch_geometric_hgt.native.build`) and called through
``ctypes`` (:mod:`~torch_geometric_hgt.native.bindings`,
:mod:`~torch_geometric_hgt.native.kernels`). Without them (no compiler,
CUDA, half precision, graphs of other sizes,
``TORCH_GEOMETRIC_HGT_NATIVE=0`` or :func:`enabled`) the torch code of
:mod:`torch_geometric_hgt.dense.math` runs; tests check both agree, and
dropout masks are the same bits either way."""
from torch_geometric_hgt.native.build import (COMPILER_TIMEOUT,
                                              openmp_runtimes)
from torch_geometric_hgt.native.kernels import (LANES, Update,
                                                attention_backward,
                                                attention_forward,
                                                attention_usable,
                                                dropout_mask, typed_backward,
                                                update, update_backward,
                                                update_forward)
from torch_geometric_hgt.native.runtime import (enabled, is_available,
                                                library, usable)

__all__ = ['COMPILER_TIMEOUT', 'LANES', 'Update', 'attention_backward',
           'attention_forward', 'attention_usable', 'dropout_mask',
           'enabled', 'is_available', 'library', 'openmp_runtimes',
           'typed_backward', 'update', 'update_backward', 'update_forward',
           'usable']
