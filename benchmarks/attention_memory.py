"""The memory model of the dispatcher against measured peaks: for each
backend of ``hgt_attention``, with and without backward, over edges, nodes,
relations, heads, head sizes and chunk sizes, the peak memory a call
allocates above its inputs (a fresh process each, glibc's mmap threshold
fixed at 64 KiB so that freed tensors leave the process at once and RSS
follows the live tensors) next to ``dispatch.working_memory``'s estimate,
which ``memory_budget=`` decides by:

    python benchmarks/attention_memory.py [--smoke]

Writes ``benchmarks/out/attention_memory.json``; the table goes to
``RESULTS.md``."""
import argparse
import os

import torch
from common import (cpu_model, memory_peak, memory_start, parse_args,
                    run_child, save)

BACKENDS = ('vectorized', 'ultrafast', 'memory_efficient')
#: the base size and one change at a time
BASE = dict(N=20000, E=400000, R=5, H=4, d=16, chunk='auto')
CHANGES = ({}, {'E': 800000}, {'N': 80000}, {'N': 4000},
           {'N': 2000, 'E': 40000}, {'N': 2000, 'E': 800000}, {'R': 20},
           {'R': 40}, {'H': 8}, {'d': 32}, {'chunk': 4096}, {'chunk': None})


def child(cfg: dict) -> dict:
    from torch_geometric_hgt.functional import dispatch, hgt_attention
    torch.manual_seed(0)
    N, E, R, H, d = (cfg[k] for k in 'NERHd')
    q, k, v = (torch.randn(N, H, d) for _ in range(3))
    ei, et = torch.randint(0, N, (2, E)), torch.randint(0, R, (E, ))
    att, msg = (torch.randn(R, H, d, d) / d for _ in range(2))
    pri = torch.ones(R, H)
    leaves = (q, k, v, att, pri, msg)
    for t in leaves:
        t.requires_grad_(cfg['grad'])
    kw = dict(backend=cfg['backend'], chunk_size=cfg['chunk'])

    def call():
        agg, _ = hgt_attention(q, k, v, ei, et, att, pri, msg, **kw)
        if cfg['grad']:
            agg.sum().backward()
            for t in leaves:
                t.grad = None

    call()  # code paths and one-time buffers, below the baseline
    base = memory_start('cpu')
    call()
    work = dispatch.Workload(N, E, R, H, d, 4, cfg['grad'])
    estimate = dispatch.choice_memory(
        dispatch.choose(cfg['backend'], cfg['chunk'], q.device, work), work)
    return {'peak_mib': memory_peak('cpu') - base,
            'estimate_mib': estimate / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = parse_args(p, child)
    os.environ['MALLOC_MMAP_THRESHOLD_'] = '65536'  # children inherit it
    base = dict(BASE, N=2000, E=40000) if args.smoke else BASE
    rows = []
    for change in CHANGES[:2] if args.smoke else CHANGES:
        for backend in BACKENDS:
            if backend == 'vectorized' and 'chunk' in change:
                continue  # it has no chunks
            for grad in (True, False):
                cfg = dict(base, **change, backend=backend, grad=grad)
                rows.append({**cfg, **run_child(__file__, cfg)})
                r = rows[-1]
                print(f"{backend:17s} grad={grad!s:5s} {change or 'base'}: "
                      f"peak {r['peak_mib']:.1f} MiB, estimate "
                      f"{r['estimate_mib']:.1f} MiB "
                      f"({r['peak_mib'] / r['estimate_mib']:.2f})",
                      flush=True)
    print(save('attention_memory', {'cpu': cpu_model(), 'rows': rows}))


if __name__ == '__main__':
    main()
