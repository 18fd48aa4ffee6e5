"""Run a per-graph function over a batch in chunks of graphs."""
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as grad_checkpoint

#: graphs per chunk for ``chunk_size="auto"``: as fast as larger chunks on CPU
#: for N = 8 (large temporaries cost page faults) and small in memory.
AUTO_CHUNK = 256


def resolve_chunk_size(chunk_size, batch_size: int) -> int:
    if chunk_size is None:
        return batch_size
    if chunk_size == 'auto':
        return min(AUTO_CHUNK, max(batch_size, 1))
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) \
            or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be a positive int, 'auto' or "
                         f"None (got {chunk_size!r})")
    return chunk_size


def chunked(fn: Callable[..., Tensor], tensors: Sequence[Optional[Tensor]],
            chunk_size, checkpoint: Optional[bool] = None) -> Tensor:
    """``fn(*tensors)`` computed on chunks of the leading (graph) dimension
    and concatenated; exact because graphs are independent.

    ``checkpoint``: recompute each chunk in backward so that only its
    inputs stay alive (default: whenever there is more than one chunk and
    gradients are on).
    """
    B = next(t for t in tensors if t is not None).size(0)
    size = resolve_chunk_size(chunk_size, B)
    if size >= B:
        return fn(*tensors)
    if checkpoint is None:
        checkpoint = torch.is_grad_enabled()
    outs = []
    for start in range(0, B, size):
        part = [None if t is None else t[start:start + size] for t in tensors]
        if checkpoint and torch.is_grad_enabled():
            outs.append(grad_checkpoint(fn, *part, use_reentrant=False))
        else:
            outs.append(fn(*part))
    return torch.cat(outs, 0)
