"""Input checks with errors that name the argument. Checks that need a host
sync (value ranges, NaN) are skipped while tracing under ``torch.compile``."""
import functools
import numbers
import warnings
from typing import Callable, Dict, Optional

import torch
from torch import Tensor


def is_compiling() -> bool:
    return torch.compiler.is_compiling()


def check_tensor(name: str, value, ndim: Optional[int] = None,
                 dtype: Optional[str] = None):
    if not isinstance(value, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor "
                        f"(got {type(value).__name__})")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"'{name}' must have {ndim} dimensions "
                         f"(got shape {tuple(value.shape)})")
    if dtype == 'long' and value.dtype != torch.long:
        raise TypeError(f"'{name}' must be of dtype torch.long "
                        f"(got {value.dtype})")
    if dtype == 'float' and not value.is_floating_point():
        raise TypeError(f"'{name}' must be a floating point tensor "
                        f"(got {value.dtype})")


def check_size(name: str, value: Tensor, dim: int, expected: int,
               what: str):
    if value.size(dim) != expected:
        raise ValueError(f"'{name}' must have size {expected} in dimension "
                         f"{dim} ({what}), got shape {tuple(value.shape)}")


def check_same_device(**tensors: Optional[Tensor]):
    items = [(k, v) for k, v in tensors.items() if v is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"'{name}' is on {t.device} but '{first_name}' "
                             f"is on {first.device}; move them to one device")


def is_positive_int(value) -> bool:
    """An int >= 1, and not a bool (which is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool) \
        and value >= 1


def check_positive_int(name: str, value):
    if not is_positive_int(value):
        raise ValueError(f"'{name}' must be a positive int (got {value!r})")


def check_matches_parameters(name: str, value: Tensor, param: Tensor,
                             dtype: bool = True):
    """``value`` on the parameters' device and, if ``dtype``, outside
    autocast of their dtype (else torch fails deep inside a product)."""
    if value.device != param.device:
        raise ValueError(f"'{name}' is on {value.device} but the layer's "
                         f"parameters are on {param.device}")
    if dtype and value.dtype != param.dtype and \
            not torch.is_autocast_enabled(value.device.type):
        raise TypeError(f"'{name}' is {value.dtype} but the layer's "
                        f"parameters are {param.dtype}; convert one of "
                        f"them or run under autocast")


def check_range(name: str, value: Tensor, high: int, what: str):
    """``0 <= value < high``; skipped when tracing."""
    if value.numel() == 0 or is_compiling():
        return
    lo, hi = int(value.min()), int(value.max())
    if lo < 0 or hi >= high:
        raise ValueError(f"'{name}' must hold {what} in [0, {high}) "
                         f"(found values in [{lo}, {hi}])")


def check_unit_interval(name: str, value: float):
    """A number in [0, 1] (a probability threshold); NaN fails."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0 <= value <= 1:
        raise ValueError(f"'{name}' must be a number in [0, 1] "
                         f"(got {value!r})")


def check_finite(name: str, value: Tensor):
    if value.numel() == 0 or is_compiling():
        return
    if not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"'{name}' contains NaN or Inf")


def check_probabilities(name: str, value: Tensor, rows_sum_to_one: bool,
                        mask: Optional[Tensor] = None, atol: float = 1e-3):
    """Entries in [0, 1], no NaN; optionally rows (last dim) summing to 1
    where ``mask`` is True."""
    if value.numel() == 0 or is_compiling():
        return
    value = value.detach()
    check_finite(name, value)
    if bool((value < 0).any()) or bool((value > 1).any()):
        raise ValueError(f"'{name}' must hold probabilities in [0, 1] (found "
                         f"values in [{float(value.min()):.4g}, "
                         f"{float(value.max()):.4g}])")
    if rows_sum_to_one:
        err = (value.float().sum(-1) - 1).abs()
        if mask is not None:
            err = err[mask]
        if err.numel() and float(err.max()) > atol:
            raise ValueError(f"'{name}' rows (last dimension) must sum to 1 "
                             f"(largest deviation {float(err.max()):.3g})")


def check_sparse_inputs(layer, x: Tensor, node_type: Tensor,
                        edge_index: Tensor, edge_type: Tensor,
                        edge_time: Optional[Tensor]):
    """All checks of the sparse layers' ``forward`` arguments."""
    check_tensor('x', x, 2, 'float')
    check_size('x', x, 1, layer.in_dim, 'in_dim')
    check_tensor('node_type', node_type, 1, 'long')
    check_size('node_type', node_type, 0, x.size(0), 'number of nodes')
    check_tensor('edge_index', edge_index, 2, 'long')
    check_size('edge_index', edge_index, 0, 2, 'source and target rows')
    check_tensor('edge_type', edge_type, 1, 'long')
    check_size('edge_type', edge_type, 0, edge_index.size(1),
               'number of edges')
    if layer.use_RTE:
        if edge_time is None:
            raise ValueError("'edge_time' is required when use_RTE=True")
        check_tensor('edge_time', edge_time, 1, 'long')
        check_size('edge_time', edge_time, 0, edge_index.size(1),
                   'number of edges')
    elif edge_time is not None:
        raise ValueError("'edge_time' was given but the layer has "
                         "use_RTE=False; build it with use_RTE=True")
    check_same_device(x=x, node_type=node_type, edge_index=edge_index,
                      edge_type=edge_type, edge_time=edge_time)
    check_matches_parameters('x', x, layer.skip)
    check_range('node_type', node_type, layer.num_node_types, 'node type ids')
    check_range('edge_index', edge_index, x.size(0), 'node indices')
    check_range('edge_type', edge_type, layer.num_relations, 'relation ids')
    if edge_time is not None:
        check_range('edge_time', edge_time, layer.max_len,
                    'relative times (max_len)')
    check_finite('x', x)


def renamed_arguments(renames: Dict[str, str], warn: bool = True
                      ) -> Callable[[Callable], Callable]:
    """Decorator: keyword arguments under an old name (``renames`` maps
    old to new) keep working, with a ``FutureWarning`` unless ``warn`` is
    False (the users' original API, which stays as it was)."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{fn.__qualname__}() got both '{old}' "
                                    f"and its new name '{new}'")
                if warn:
                    warnings.warn(f"{fn.__qualname__}: argument '{old}' is "
                                  f"now '{new}'", FutureWarning,
                                  stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return inner
    return wrap
