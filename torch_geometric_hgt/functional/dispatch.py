"""The one place that picks what runs: the backend of the edge phase, the
layout of its pair rows, chunk sizes, whether a layer runs its backend's
whole-layer Function (the same algorithm fused with the projections and
the update, with a hand-written backward), and the dense layers' backend
(:func:`dense_backend`).

Backends (each a module of :mod:`~torch_geometric_hgt.functional.backends`,
the same algorithm from every caller):

- ``'vectorized'``: per-edge gathers and plain torch ops, differentiated by
  autograd; no host sync (traces under ``torch.compile``); the one backend
  that takes explanation masks.
- ``'ultrafast'``: relation transforms folded onto (target, relation) pair
  rows and one edge operator with a hand-written backward over chunks of
  edges (:mod:`~torch_geometric_hgt.functional.plan`); on CPU in float32 /
  float64, eager, for a layer with a buffer pool, the whole layer as one
  Function whose large tensors come from the pool.
- ``'memory_efficient'``: the same folds over chunks of whole targets,
  recomputed in backward, so only node-level and ``[E, H]`` tensors are
  kept; a layer on eager puts the projections and the update inside the
  same chunks too (only the input and the attention are kept).
"""
from typing import Optional, Union

import torch

from torch_geometric_hgt import validation as V

#: ``backend=`` choices; ``'auto'`` picks one by :func:`select_backend`
BACKENDS = ('auto', 'ultrafast', 'memory_efficient', 'vectorized')

#: on CUDA, ``'auto'`` runs ``'vectorized'`` up to this many edges: its few
#: large kernels beat the chunked operator's launches there (H200: 2 vs
#: 4 ms at 10k nodes / 50k edges, 3 vs 9 ms at 20k / 200k, a tie at 100k /
#: 1M where it needs 3.4x the memory; ``benchmarks/RESULTS.md``)
CUDA_VECTORIZED_MAX_EDGES = 262144

#: edges per chunk on CPU for ``chunk_size='auto'``: cache-sized for
#: ``'ultrafast'``; memory first for ``'memory_efficient'`` (32768 was ~15%
#: faster for ~90 MB more at 100k nodes / 1M edges)
CPU_CHUNK_SIZE = {'ultrafast': 32768, 'memory_efficient': 16384}

#: on an H200 the chunked backends' kernel launches, not their arithmetic,
#: set the time at the CPU sizes: 262144 made ``'memory_efficient'`` ~8x
#: and ``'ultrafast'`` ~1.2x faster at 100k nodes / 1M edges
CUDA_CHUNK_SIZE = 262144

#: what ``chunk_size`` takes: a positive int, ``'auto'`` (the device's
#: default) or ``None`` (one chunk)
ChunkSize = Union[int, str, None]


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"'backend' must be one of {BACKENDS} (got "
                         f"{backend!r})")


def check_chunk_size(chunk_size: ChunkSize) -> None:
    if chunk_size is None or chunk_size == 'auto':
        return
    if not V.is_positive_int(chunk_size):
        raise ValueError(f"'chunk_size' must be an int >= 1, 'auto' or None "
                         f"(got {chunk_size!r})")


def select_backend(backend: str, device: torch.device, num_edges: int,
                   masked: bool = False) -> str:
    """The backend that runs for ``backend``: ``'vectorized'`` wherever
    explanation masks are given (it alone differentiates with respect to
    them); for ``'auto'``, ``'ultrafast'`` on CPU (fastest at every size
    measured) and on CUDA above :data:`CUDA_VECTORIZED_MAX_EDGES` edges,
    else ``'vectorized'``."""
    if masked:
        return 'vectorized'
    if backend != 'auto':
        return backend
    if device.type == 'cuda' and num_edges <= CUDA_VECTORIZED_MAX_EDGES:
        return 'vectorized'
    return 'ultrafast'


def edges_per_chunk(chunk_size: ChunkSize, backend: str,
                    device: torch.device, num_edges: int) -> int:
    """``chunk_size``; for ``'auto'`` the backend's default on the device,
    for :obj:`None` all ``num_edges`` in one chunk."""
    if chunk_size is None:
        return max(num_edges, 1)
    if chunk_size != 'auto':
        return chunk_size
    if device.type == 'cuda':
        return CUDA_CHUNK_SIZE
    return CPU_CHUNK_SIZE.get(backend, CPU_CHUNK_SIZE['ultrafast'])


def pair_layout(num_nodes: int, num_relations: int, num_edges: int,
                blocks: bool) -> str:
    """The pair rows' layout: PyG's node blocks where given, rows for all
    ``N R`` pairs while that is no more than the edges (or while tracing:
    compacting needs the pairs' count on the host), else only the pairs
    that occur."""
    if blocks:
        return 'blocks'
    if num_nodes * num_relations <= max(num_edges, 1) or V.is_compiling():
        return 'dense'
    return 'compact'


def sort_nodes(backend: str) -> bool:
    """Whether a layer sorts nodes by type (one GEMM per type on a slice,
    one host sync) rather than running all-types GEMMs and a gather."""
    return backend != 'vectorized' and not V.is_compiling()


def layer_route(backend: str, x: torch.Tensor, use_rte: bool,
                pooled: bool, weight_dtype: Optional[torch.dtype] = None
                ) -> str:
    """What a sparse layer on the typed-weights layout runs for
    ``backend`` (after :func:`select_backend`): ``'pooled'`` (the
    ``'ultrafast'`` layer Function, on CPU in float32 / float64 with
    matching weights, eager without autocast, no relative temporal
    encoding, for a layer with a pool), ``'target_chunked'``
    (``'memory_efficient'`` on eager) or ``'edge'`` (projections, the edge
    phase by :func:`~torch_geometric_hgt.functional.hgt_attention`, the
    update)."""
    if V.is_compiling():
        return 'edge'
    if backend == 'memory_efficient':
        return 'target_chunked'
    if backend == 'ultrafast' and pooled and pooled_supported(
            x, use_rte, weight_dtype):
        return 'pooled'
    return 'edge'


def pooled_supported(x: torch.Tensor, use_rte: bool,
                     weight_dtype: Optional[torch.dtype]) -> bool:
    """The ``'pooled'`` route's conditions on the input (see
    :func:`layer_route`)."""
    return (x.device.type == 'cpu' and x.dtype in (torch.float32,
                                                   torch.float64)
            and weight_dtype in (None, x.dtype) and not use_rte
            and not V.is_compiling()
            and not torch.is_autocast_enabled('cpu'))


def dense_backend(x: torch.Tensor, weight_dtype: torch.dtype) -> str:
    """The backend of the dense soft-graph layers: ``'function'`` (the
    hand-written Function, with the C kernels where they run) for float32
    or float64 with matching weights, eager, outside autocast (it keeps no
    float32 accumulators for lower precisions); else ``'autograd'`` (the
    same products differentiated by autograd)."""
    if (x.dtype in (torch.float32, torch.float64) and weight_dtype == x.dtype
            and not torch.is_autocast_enabled(x.device.type)
            and not V.is_compiling()):
        return 'function'
    return 'autograd'
