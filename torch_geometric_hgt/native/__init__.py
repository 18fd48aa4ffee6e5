"""Optional C kernels for the dense layer's hand-written backward: the
per-type soft update (``soft_update.c``), which does in one pass over a
node's ``[T, D]`` block what takes torch ~8 (forward) and ~15 (backward)
passes over memory, and the per-graph attention of 8-node graphs
(``attention.c``), which keeps a graph's scores, softmax and sums over
sources in registers where torch runs ~25 batched operations over
``[H, b, 8, 8, R]`` tensors, and with them the per-head products with
the relation weights.

Built on first use with the system C compiler (about two seconds, no
torch headers) into a per-user cache and called through ``ctypes``:

- for the CPU the compiler reports as ``-march=native``; the cache key
  holds the compiler's own list of what that target defines, so a shared
  cache never hands one machine another's instructions (any
  architecture); a compiler without ``-march=native`` builds portable code;
- with OpenMP only against the OpenMP runtime torch has loaded (linked by
  its path), so no second runtime enters the process; else single-threaded;
- a failed build is remembered in the cache (no retry in every process),
  the compiler runs under a timeout, and a missing compiler warns once.

Without the kernels (no compiler, CUDA, half precision, graphs of other
sizes, ``TORCH_GEOMETRIC_HGT_NATIVE=0`` or :func:`enabled`) the torch code
in :mod:`torch_geometric_hgt.dense.math` runs; tests check both agree,
and dropout masks are the same bits either way
(:func:`torch_geometric_hgt.functional.update.dropout_keep`).

Modules: :mod:`~torch_geometric_hgt.native.build` (compiler, target,
OpenMP runtime, cache, build), :mod:`~torch_geometric_hgt.native.bindings`
(the C signatures), :mod:`~torch_geometric_hgt.native.runtime` (the
switch and the library), :mod:`~torch_geometric_hgt.native.kernels` (the
kernels on tensors)."""
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
