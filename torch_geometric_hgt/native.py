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
(:func:`torch_geometric_hgt.ops.dropout_keep`)."""
import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.ops import EXP_CAP

_SOURCES = [Path(__file__).parent / 'csrc' / f for f in
            ('kernels.h', 'soft_update.c', 'attention.c')]
#: reassociation lets the compiler vectorize the sums; no finite-math, so
#: NaN and inf propagate as in torch
_FLAGS = ['-O3', '-fPIC', '-fno-math-errno', '-fno-trapping-math',
          '-fno-signed-zeros', '-fassociative-math', '-ffp-contract=fast']
#: seconds one compiler call may take
COMPILER_TIMEOUT = 300.0
#: rows per thread below which fewer threads run
_MIN_ROWS = 256
#: graph size and feature multiple of the attention kernels (vector lanes)
LANES = 8

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def _compiler() -> Optional[str]:
    cc = os.environ.get('CC') or (sysconfig.get_config_var('CC') or 'cc')
    return shutil.which(cc.split()[0])


def _run_compiler(args: List[str]) -> subprocess.CompletedProcess:
    """``args`` under :data:`COMPILER_TIMEOUT`; a timeout reads as a
    failed run."""
    try:
        return subprocess.run(args, capture_output=True, text=True,
                              timeout=COMPILER_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(
            args, 1, '', f'{args[0]} ran over {COMPILER_TIMEOUT:.0f} s')


@functools.lru_cache(maxsize=None)
def _target(cc: str) -> Tuple[List[str], str]:
    """``(flags, key)``: ``-march=native`` and the macros the compiler
    defines for it (what the built code may use), or no target flag and
    ``'portable'`` where the compiler has no ``-march=native``."""
    run = _run_compiler([cc, '-march=native', '-E', '-dM', '-x', 'c',
                         os.devnull])
    if run.returncode != 0:
        return [], 'portable'
    return ['-march=native'], '\n'.join(sorted(run.stdout.splitlines()))


def openmp_runtimes() -> List[str]:
    """Paths of the OpenMP runtimes mapped into this process (torch's,
    normally; read from ``/proc/self/maps``, so empty where there is
    none)."""
    try:
        with open('/proc/self/maps') as f:
            paths = {line.split()[-1] for line in f if '/' in line}
    except OSError:
        return []
    return sorted(p for p in paths
                  if re.match(r'lib(g|i|i5|)omp[-.\w]*\.so', Path(p).name))


def _cache_dirs() -> Iterator[Path]:
    """Where the kernels may be built, best first:
    ``TORCH_GEOMETRIC_HGT_CACHE``, ``$XDG_CACHE_HOME`` (if set and not
    empty), ``~/.cache`` (if there is a home), a per-user folder in the
    temporary directory."""
    explicit = os.environ.get('TORCH_GEOMETRIC_HGT_CACHE')
    if explicit:
        yield Path(explicit)
    xdg = os.environ.get('XDG_CACHE_HOME')
    if xdg and Path(xdg).is_absolute():
        yield Path(xdg) / 'torch_geometric_hgt'
    try:
        yield Path.home() / '.cache' / 'torch_geometric_hgt'
    except RuntimeError:  # no HOME and no password entry
        pass
    uid = os.getuid() if hasattr(os, 'getuid') else 'user'
    yield Path(tempfile.gettempdir()) / f'torch_geometric_hgt-{uid}'


def _writable_cache() -> Path:
    errors = []
    for path in _cache_dirs():
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                return path
        except OSError as e:
            errors.append(f'{path}: {e}')
    raise OSError('no writable cache folder: ' + '; '.join(errors))


_REALS = {torch.float32: ('float', ctypes.c_float),
          torch.float64: ('double', ctypes.c_double)}


def _build(cc: str, real: str) -> Path:
    """The library for ``real``: with OpenMP against torch's runtime where
    the compiler can, else without. A variant that failed is skipped
    (its error is kept beside the library's name)."""
    march, target = _target(cc)
    runtimes = openmp_runtimes()
    variants = [(['-fopenmp'], runtimes[:1])] if len(runtimes) == 1 else []
    variants.append(([], []))
    cache = _writable_cache()
    errors = []
    for openmp, link in variants:
        flags = [*_FLAGS, *march, *openmp, f'-Dreal={real}',
                 f'-DREAL_BYTES={4 if real == "float" else 8}',
                 f'-DEXP_CAP={EXP_CAP:g}']
        key = hashlib.sha256('\0'.join(
            [*(f.read_text() for f in _SOURCES), cc, target, *flags,
             *link]).encode()).hexdigest()[:16]
        target_so = cache / f'dense_kernels_{key}.so'
        failed = target_so.with_suffix('.failed')
        if target_so.exists():
            return target_so
        if failed.exists():
            errors.append(failed.read_text())
            continue
        # build aside and rename: racing processes see a whole file or none
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            so = Path(tmp) / target_so.name
            objs = [str(Path(tmp) / f'{src.stem}.o') for src in _SOURCES[1:]]
            runs = [_run_compiler([cc, *flags, '-c', str(src), '-o', obj])
                    for src, obj in zip(_SOURCES[1:], objs)]
            if all(r.returncode == 0 for r in runs):
                # link the runtime torch has loaded by its path, not -lgomp
                runs.append(_run_compiler([cc, '-shared', '-o', str(so),
                                           *objs, *link, '-lm']))
            if all(r.returncode == 0 for r in runs):
                os.replace(so, target_so)
                return target_so
            error = next(r.stderr.strip() for r in runs if r.returncode)
            errors.append(error)
            failed.write_text(error)
    raise OSError('\n'.join(errors))


def _load(cc: str, real: str, c_real) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_build(cc, real)))
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


_LIBRARY_LOCK = threading.Lock()
_ENABLED = [True]


def library() -> Optional[Dict[torch.dtype, ctypes.CDLL]]:
    """The compiled kernels per dtype, or ``None`` where they are switched
    off or cannot be built (warns once why). Threads that ask at once (the
    dense layer's chunk workers, say) wait for one build."""
    if not _ENABLED[0]:
        return None
    with _LIBRARY_LOCK:
        return _library()


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
def _library() -> Optional[Dict[torch.dtype, ctypes.CDLL]]:
    if os.environ.get('TORCH_GEOMETRIC_HGT_NATIVE', '1') == '0':
        return None
    cc = _compiler()
    if cc is None:
        warnings.warn("torch_geometric_hgt: no C compiler found (set CC to "
                      "one), so the dense layer runs its torch code; the "
                      "results are the same, the C kernels only faster")
        return None
    try:
        return {dtype: _load(cc, *real) for dtype, real in _REALS.items()}
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


def _threads(n: int) -> int:
    return max(1, min(torch.get_num_threads(), n // _MIN_ROWS))


def _p(t: Optional[Tensor]) -> Optional[int]:
    """The address of ``t``, which the caller made contiguous."""
    return None if t is None else t.data_ptr()


def _contiguous(*ts: Optional[Tensor]) -> List[Optional[Tensor]]:
    return [None if t is None else t.contiguous() for t in ts]


def _run(kind: str, dtype: torch.dtype, n: int, *args,
         threads: Optional[int] = None) -> None:
    """The kernel ``kind`` for ``dtype`` over ``n`` rows, on ``threads``
    (default :func:`_threads`)."""
    fn = getattr(library()[dtype], kind)
    if fn(n, _threads(n) if threads is None else threads, *args):
        raise MemoryError(f"{kind}: no memory for its per-thread workspace")


def _summed(kind: str, dtype: torch.dtype, n: int, size: Tuple[int, ...],
            *args) -> Tensor:
    """:func:`_run` with one zeroed float64 accumulator of ``size`` per
    thread as the kernel's last operand (its sums run over every row of
    the chunk); returns their sum in ``dtype``."""
    threads = _threads(n)
    acc = torch.zeros(threads, *size, dtype=torch.float64)
    _run(kind, dtype, n, *args, _p(acc), threads=threads)
    return acc.sum(0).to(dtype)


class Update(NamedTuple):
    """The soft update's operands (contiguous; see :func:`update_forward`)."""
    Y: Tensor  # [n, T, D]: the output map without its bias
    bias: Tensor  # [T, D]
    keep: Optional[Tensor]  # [n, 1, D] bool dropout mask
    scale: float  # what kept entries are multiplied by
    x: Optional[Tensor]  # [n, D]: the skip input; None without skip
    keep_x: Optional[Tensor]  # [T]
    P: Tensor  # [n, T]
    gamma: Optional[Tensor]  # [T, D]; None without norm
    beta: Optional[Tensor]

    def args(self) -> tuple:
        keep = None if self.keep is None else self.keep.view(torch.uint8)
        return (_p(self.Y), _p(self.bias), _p(keep), self.scale,
                *map(_p, (self.x, self.keep_x, self.P, self.gamma,
                          self.beta)))


def update(Y: Tensor, bias: Tensor, keep: Optional[Tensor], scale: float,
           x: Optional[Tensor], keep_x: Optional[Tensor], P: Tensor,
           gamma: Optional[Tensor], beta: Optional[Tensor]) -> Update:
    """The operands made contiguous; ``x`` is dropped without the skip
    (``keep_x`` ``None``)."""
    return Update(*_contiguous(Y, bias, keep), scale,
                  *_contiguous(x if keep_x is not None else None, keep_x, P,
                               gamma, beta))


def update_forward(u: Update, eps: float, mean: Optional[Tensor] = None,
                   rstd: Optional[Tensor] = None
                   ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``out = sum_t P_t (gamma_t LN(y_t) + beta_t)`` ``[n, D]``, ``y_t =
    (Y_t + bias_t) keep scale + keep_x_t x``, and the norm's ``mean, rstd
    [n, T, 1]`` (written into those if given, contiguous)."""
    n, T, D = u.Y.shape
    out = u.Y.new_empty(n, D)
    if u.gamma is not None and mean is None:
        mean, rstd = u.Y.new_empty(n, T, 1), u.Y.new_empty(n, T, 1)
    _run('update_fwd', u.Y.dtype, n, T, D, *u.args(), eps, _p(out),
         _p(mean), _p(rstd))
    return out, mean, rstd


def update_backward(g: Tensor, u: Update, mean: Optional[Tensor],
                    rstd: Optional[Tensor], dx: Optional[Tensor]
                    ) -> Tuple[Tensor, Tensor, Optional[Tensor], Tensor,
                               Optional[Tensor], Optional[Tensor]]:
    """Backward of :func:`update_forward` for ``g = d out [n, D]``:
    ``dY [n, T, D]``, ``dP [n, T]``, and summed over nodes ``dgamma
    [T, D]`` (``None`` without norm), ``dbias [T, D]``, ``dkeep_x [T]``
    (``None`` without skip) and ``dbeta [T, D]`` (``None`` without norm);
    adds the skip's share of ``dx`` to ``dx [n, D]`` (contiguous, required
    with the skip)."""
    n, T, D = u.Y.shape
    g, mean, rstd = _contiguous(g, mean, rstd)
    dY, dP = torch.empty_like(u.Y), u.P.new_empty(n, T)
    dgamma, dbias, dbeta, dkeep_x = _summed(
        'update_bwd', u.Y.dtype, n, (3 * T * D + T, ), T, D, *u.args(),
        _p(mean), _p(rstd), _p(g), _p(dY), _p(dP), _p(dx)).split(
            [T * D, T * D, T * D, T])
    norm = u.gamma is not None
    return (dY, dP, dgamma.view(T, D) if norm else None, dbias.view(T, D),
            None if u.x is None else dkeep_x,
            dbeta.view(T, D) if norm else None)


def typed_backward(dzv: Tensor, x: Tensor, P: Tensor, dkqv: Tensor,
                   bias: Tensor, dP: Tensor, dx: Optional[Tensor]) -> Tensor:
    """Backward of the typed input ``[P_t x]`` and of the K/Q/V biases
    ``sum_t P_t b_t`` (``bias [T, O]``), for ``dzv [n, T, F]`` and ``dkqv
    [n, O]``: adds their share to ``dP [n, T]`` and (if given) to ``dx [n,
    F]`` (both contiguous) and returns the biases' gradient ``[T, O]``."""
    n, T, F = dzv.shape
    dzv, x, P, dkqv, bias = _contiguous(dzv, x, P, dkqv, bias)
    return _summed('typed_bwd', dzv.dtype, n, (T, dkqv.size(1)), T, F,
                   dkqv.size(1), _p(dzv), _p(x), _p(P), _p(dkqv), _p(bias),
                   _p(dP), _p(dx))


def dropout_mask(shape: Tuple[int, ...], seed: int, threshold: int,
                 out: Optional[Tensor] = None) -> Tensor:
    """A bool mask of ``shape`` on CPU: entry ``k`` is ``True`` where its
    32 bits of splitmix64(``seed``, ``k // 2``) reach ``threshold``
    (:func:`torch_geometric_hgt.ops.hashed_keep` draws the same bits in
    torch); ``out``: contiguous bool."""
    keep = torch.empty(shape, dtype=torch.bool) if out is None else out
    _run('dropout_mask', torch.float32, keep.numel(), seed, threshold,
         _p(keep.view(torch.uint8)))
    return keep


def attention_usable(N: int, d: int) -> bool:
    """Whether the attention kernels take graphs of ``N`` nodes with head
    size ``d`` (the graph is one vector of :data:`LANES`)."""
    return N == LANES and d % LANES == 0


def _attention_threads(E: Tensor) -> int:
    """Threads of the attention kernels for the graphs of ``E``."""
    return _threads(E.size(0) * LANES)


def _attention_kernel(kind: str, kqv: Tensor, weights: List[Tensor],
                      E: Tensor, a: Tensor, expo: Tensor, *rest) -> None:
    """The attention kernel ``kind`` over the ``b`` graphs of ``kqv [n, 3
    H d]``, head weights ``weights`` (made contiguous), ``E [b, N, N,
    R]``, ``a [b, N, N]`` and ``expo [H, b, N, N]`` (whose head stride is
    free; all contiguous but for that stride) and its own operands
    ``rest``, on :func:`_attention_threads` threads."""
    b, _, _, R = E.shape
    H = expo.size(0)
    if not all(t.is_contiguous() for t in (kqv, E, a, expo[0])):
        raise ValueError("attention kernels: kqv, E, a and each head of "
                         "expo must be contiguous")
    weights = _contiguous(*weights)  # (kept alive through the call)
    _run(kind, kqv.dtype, b, H, R, kqv.size(1) // (3 * H), expo.stride(0),
         _p(kqv), *map(_p, weights), _p(E), _p(a), _p(expo), *rest,
         threads=_attention_threads(E))


def attention_forward(kqv: Tensor, F: Tensor, M: Tensor, E: Tensor,
                      a: Tensor, expo: Tensor, recompute: bool = False
                      ) -> Tensor:
    """Per graph and head: the softmax weights before ``a`` into ``expo``
    (read from it instead if ``recompute``) and ``agg [n, H d]``, the sum
    over sources ``j`` of ``a_ji expo_ji sum_r E_jir v_j M_r`` (see
    :func:`_attention_kernel`; ``F [H, d, R d]`` are the folded query
    weights ``mu_r / sqrt(d) A_r^T``, ``M [H, R d, d]`` the message
    weights of every relation)."""
    agg = kqv.new_empty(kqv.size(0), kqv.size(1) // 3)
    _attention_kernel('attn_fwd', kqv, [F, M], E, a, expo, int(recompute),
                      _p(agg))
    return agg


def attention_backward(kqv: Tensor, F: Tensor, Ft: Tensor, Mt: Tensor,
                       E: Tensor, a: Tensor, expo: Tensor, dagg: Tensor,
                       need_E: bool, need_a: bool
                       ) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor],
                                  Optional[Tensor]]:
    """Backward of :func:`attention_forward` for ``dagg = d agg [n, H
    d]``, given the transposes ``Ft [H, R d, d]`` of ``F`` and ``Mt [H,
    d, R d]`` of ``M``: ``d kqv`` (like ``kqv``), ``dF``, ``dM`` and, where
    asked, ``dE`` and ``d a`` (summed over heads)."""
    dagg, dkqv = dagg.contiguous(), torch.empty_like(kqv)
    dE = torch.empty_like(E) if need_E else None
    da = torch.empty_like(a) if need_a else None
    # one sum per kernel thread, in the kernels' precision as BLAS would
    dF = F.new_zeros(_attention_threads(E), *F.shape)
    dM = F.new_zeros(_attention_threads(E), *Ft.shape)
    _attention_kernel('attn_bwd', kqv, [F, Ft, Mt], E, a, expo,
                      _p(dagg), _p(dkqv), _p(dF), _p(dM),
                      _p(dE), _p(da))
    return dkqv, dF.sum(0), dM.sum(0), dE, da
