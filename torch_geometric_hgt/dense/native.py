"""Optional C kernels for the dense layer's hand-written backward: the
per-type soft update (``soft_update.c``), which does in one pass over a
node's ``[T, D]`` block what takes torch ~8 (forward) and ~15 (backward)
passes over memory, and the per-graph attention of 8-node graphs
(``attention.c``), which keeps a graph's scores, softmax and sums over
sources in registers where torch runs ~25 batched operations over
``[H, b, 8, 8, R]`` tensors, and with them the per-head products with
the relation weights (as batched BLAS products they wrote and read four
``[H, n, R d]`` tensors per chunk, and the attention took ~1.5x as
long). Compiled on first use with the system C compiler (about two
seconds, no torch headers) into a per-user cache and called through
``ctypes``. Built with OpenMP where the compiler has it,
they run on the OpenMP runtime torch has loaded, on
``torch.get_num_threads()`` threads.
Without a compiler, on CUDA, or with ``TORCH_GEOMETRIC_HGT_NATIVE=0``, the
torch code in :mod:`torch_geometric_hgt.dense.fused` runs instead, and for
the attention also for graphs of other sizes or head sizes that are not a
multiple of 8; tests check that both agree."""
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

_SOURCES = [Path(__file__).with_name(f) for f in
            ('kernels.h', 'soft_update.c', 'attention.c')]
#: reassociation lets the compiler vectorize the sums; no finite-math, so
#: NaN and inf propagate as in torch
_FLAGS = ['-O3', '-march=native', '-fPIC', '-shared', '-fno-math-errno',
          '-fno-trapping-math', '-fno-signed-zeros', '-fassociative-math',
          '-ffp-contract=fast']
#: rows per thread below which fewer threads run
_MIN_ROWS = 256
#: graph size and feature multiple of the attention kernels (vector lanes)
LANES = 8

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def _compiler() -> Optional[str]:
    cc = os.environ.get('CC') or (sysconfig.get_config_var('CC') or 'cc')
    return shutil.which(cc.split()[0])


def _cpu_key() -> str:
    """What ``-march=native`` depends on."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((ln for ln in f if ln.startswith('flags')), '')
    except OSError:
        flags = ''
    return platform.machine() + platform.processor() + flags


def _cache_dir() -> Path:
    root = os.environ.get('TORCH_GEOMETRIC_HGT_CACHE') or \
        Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / \
        'torch_geometric_hgt'
    return Path(root)


_REALS = {torch.float32: ('float', ctypes.c_float),
          torch.float64: ('double', ctypes.c_double)}


def _build(cc: str, real: str) -> Path:
    """The library for ``real``, built with OpenMP if ``cc`` can."""
    errors = []
    for openmp in (['-fopenmp'], []):
        flags = [*_FLAGS, *openmp, f'-Dreal={real}',
                 f'-DREAL_BYTES={4 if real == "float" else 8}']
        key = hashlib.sha256('\0'.join(
            [*(f.read_text() for f in _SOURCES), cc, _cpu_key(),
             *flags]).encode())
        target = _cache_dir() / f'dense_kernels_{key.hexdigest()[:16]}.so'
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # build aside and rename: racing processes see a whole file or none
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            so = Path(tmp) / target.name
            run = subprocess.run([cc, *flags, '-o', str(so),
                                  *(str(f) for f in _SOURCES[1:]), '-lm'],
                                 capture_output=True, text=True)
            if run.returncode == 0:
                os.replace(so, target)
                return target
            errors.append(run.stderr.strip())
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


def library() -> Optional[Dict[torch.dtype, ctypes.CDLL]]:
    """The compiled kernels per dtype, or ``None`` where they are switched
    off or cannot be built (warns once why). Threads that ask at once (the
    dense layer's chunk workers, say) wait for one build."""
    with _LIBRARY_LOCK:
        return _library()


@functools.lru_cache(maxsize=None)
def _library() -> Optional[Dict[torch.dtype, ctypes.CDLL]]:
    if os.environ.get('TORCH_GEOMETRIC_HGT_NATIVE', '1') == '0':
        return None
    cc = _compiler()
    if cc is None:
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


def dropout_mask(shape: Tuple[int, ...], p: float,
                 out: Optional[Tensor] = None) -> Tensor:
    """A bool mask of ``shape`` on CPU, ``True`` with probability ``1 - p``
    (to 2^-32), from a hash of a seed drawn from torch's default generator
    (so ``torch.manual_seed`` fixes it) and each entry's index; ``out``:
    contiguous bool."""
    keep = torch.empty(shape, dtype=torch.bool) if out is None else out
    seed = int(torch.randint(2**63 - 1, ()))
    threshold = min(round(p * 2**32), 2**32)
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
