"""The kernels as functions on tensors (operands made contiguous, outputs
allocated, per-thread sums reduced)."""
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_hgt.native.runtime import library

#: rows per thread below which fewer threads run
_MIN_ROWS = 256
#: graph size and feature multiple of the attention kernels (vector lanes)
LANES = 8


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
    (:func:`torch_geometric_hgt.functional.update.hashed_keep` draws the
    same bits in torch); ``out``: contiguous bool."""
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
