"""The one place that picks what runs: the edge phase's backend, pair
layout and chunk size (:func:`choose`), a sparse layer's route
(:func:`layer_route`) and the dense layers' backend (:func:`dense_backend`).

Backends (modules of :mod:`~torch_geometric_hgt.functional.backends`, the
same algorithm from every caller): ``'vectorized'`` (per-edge gathers,
autograd, no host sync; the one that takes explanation masks),
``'ultrafast'`` (relation transforms folded onto (target, relation) pair
rows, one edge operator with a hand-written backward over chunks of
edges; on CPU a layer may run it as one pooled Function),
``'memory_efficient'`` (the same over chunks of whole targets, recomputed
in backward; a layer puts its projections and update in the chunks too).
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

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


def check_memory_budget(memory_budget: Optional[int]) -> None:
    if memory_budget is not None and not V.is_positive_int(memory_budget):
        raise ValueError(f"'memory_budget' must be a number of bytes >= 1 "
                         f"or None (got {memory_budget!r})")


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


#: the smallest automatic chunk a memory budget shrinks to (smaller chunks
#: cost launches and Python steps, not memory worth having)
MIN_CHUNK_SIZE = 1024

#: the working-memory model, per backend ``(with backward, forward
#: only)``: multiples of an int64 per edge, an ``[E, H]`` float32 (or
#: wider) tensor, ``[E, F]``, ``[N, F]`` and ``[pair rows, F]`` feature
#: tensors, a chunk's ``[chunk, H]`` int64 indices, its pair rows' ``[n R,
#: F]`` (``F = H d``) and MiB. Fitted to the peaks that
#: ``benchmarks/attention_memory.py`` measured on CPU over edges, nodes,
#: degrees, relations, heads, head sizes and chunk sizes, then raised by
#: 15% and rounded up: every measured peak was 0.64-0.94x of its estimate
#: (``benchmarks/RESULTS.md``).
MEMORY_MODEL = {
    'vectorized': ((18, 5, 7, 0, 3, 0, 0, 0), (9, 0, 5, 0, 3, 0, 0, 0)),
    'ultrafast': ((6, 8, 0, 5, 4, 2, 0, 0), (6, 4, 0, 4, 3, 3, 0, 0)),
    'memory_efficient': ((6, 4, 0, 8, 0, 2, 6, 1), (7, 1, 0, 4, 0, 3, 4,
                                                     1)),
}


class Workload(NamedTuple):
    """The sizes of one edge-phase call that decide its memory."""
    num_nodes: int
    num_edges: int
    num_relations: int
    heads: int
    head_dim: int
    #: bytes per element of the features
    itemsize: int
    #: whether backward will run (the inputs need gradients)
    grad: bool


class Choice(NamedTuple):
    """What runs for one call: the backend, edges per chunk and the pair
    layout (:func:`pair_layout`; ``'dense'`` for ``'memory_efficient'``,
    unused by ``'vectorized'``)."""
    backend: str
    chunk: int
    layout: str


def pair_rows(layout: str, w: Workload,
              blocks: Optional[Tuple[Sequence[int], Sequence[int]]]) -> int:
    """The pair rows of ``layout`` (for ``'compact'`` an upper bound: the
    count needs the host)."""
    N, R, E = w.num_nodes, w.num_relations, w.num_edges
    if layout == 'blocks':
        return sum(blocks[0][b] for b in blocks[1])
    return N * R if layout == 'dense' else min(N * R, E)


def working_memory(backend: str, w: Workload, chunk: int,
                   pairs: int) -> int:
    """Bytes :func:`~torch_geometric_hgt.functional.hgt_attention` allocates
    beyond its inputs with ``backend``, ``chunk`` edges per chunk and
    ``pairs`` pair rows, the outputs included and, for ``w.grad``, the
    backward and the inputs' gradients: :data:`MEMORY_MODEL`'s estimate
    of the peak. The chunked backends work in float32 or wider."""
    N, E, R, H = w.num_nodes, w.num_edges, w.num_relations, w.heads
    F = H * w.head_dim
    acc = max(w.itemsize, 4)
    item = w.itemsize if backend == 'vectorized' else acc
    chunk = min(chunk, max(E, 1))
    targets = min(N, chunk, math.ceil(chunk * N / max(E, 1)))
    sizes = (8 * E, acc * E * H, item * E * F, item * N * F,
             item * pairs * F, 8 * chunk * H, acc * targets * R * F, 2**20)
    model = MEMORY_MODEL[backend][0 if w.grad else 1]
    return sum(c * n for c, n in zip(model, sizes))


def choice_memory(choice: Choice, w: Workload,
                  blocks: Optional[Tuple[Sequence[int], Sequence[int]]]
                  = None) -> int:
    """:func:`working_memory` of what ``choice`` runs (``'vectorized'``
    keeps a row for every (node, relation) pair, whatever the layout)."""
    layout = 'dense' if choice.backend == 'vectorized' else choice.layout
    return working_memory(choice.backend, w, choice.chunk,
                          pair_rows(layout, w, blocks))


def choose(backend: str, chunk_size: ChunkSize, device: torch.device,
           w: Workload, masked: bool = False,
           memory_budget: Optional[int] = None,
           blocks: Optional[Tuple[Sequence[int], Sequence[int]]] = None
           ) -> Choice:
    """The dispatcher's decision for one call. Without ``memory_budget``:
    :func:`select_backend`, :func:`edges_per_chunk` and
    :func:`pair_layout`. With one (bytes), ``'auto'`` tries that backend,
    then the slower, leaner ones after it (``'vectorized'``,
    ``'ultrafast'``, ``'memory_efficient'``), and an automatic chunk size
    halves down to :data:`MIN_CHUNK_SIZE`, until :func:`working_memory`
    fits; a named backend or chunk size is kept. A budget that nothing
    fits is an error (naming the least the call needs)."""
    name = select_backend(backend, device, w.num_edges, masked)
    order = ('vectorized', 'ultrafast', 'memory_efficient')
    tries = order[order.index(name):] if backend == 'auto' and \
        not masked and memory_budget is not None else (name, )
    least = None
    for name in tries:
        chunk = edges_per_chunk(chunk_size, name, device, w.num_edges)
        layout = 'dense' if name == 'memory_efficient' else pair_layout(
            w.num_nodes, w.num_relations, w.num_edges, blocks is not None)
        if memory_budget is None:
            return Choice(name, chunk, layout)
        while True:
            need = choice_memory(Choice(name, chunk, layout), w, blocks)
            least = need if least is None else min(least, need)
            if need <= memory_budget:
                return Choice(name, chunk, layout)
            if chunk_size != 'auto' or name == 'vectorized' or \
                    chunk <= MIN_CHUNK_SIZE:
                break
            chunk = max(chunk // 2, MIN_CHUNK_SIZE)
    raise ValueError(
        f"'memory_budget' ({memory_budget} bytes) is below what this call "
        f"needs with backend {' or '.join(map(repr, tries))}: at least "
        f"{least} bytes by dispatch.working_memory's estimate")
