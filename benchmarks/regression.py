"""The four layers a refactor must not slow down, each in a fresh process:
``UltraFastHGTConv`` and ``MemoryEfficientHGTConv`` at 100k nodes / 1M
edges (forward, forward+backward, peak memory), ``HGTConv`` on PyG's dict
API at 2% of ogbn-mag and ``DenseHGTConv`` on 33,169 soft families
(forward+backward). Only public layer APIs are used, so the script measures
a previous commit's package as well: run it through ``versus.py`` with
``--script-from new``, which alternates old and new in one run:

    python benchmarks/versus.py bd96f81 benchmarks/regression.py \
        --script-from new --rounds 5

Writes ``benchmarks/out/regression.json``."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import OUT, median_time, memory_peak, memory_start

CASES = ('ultrafast', 'memory_efficient', 'hgtconv_dict', 'dense')


def setup(name: str, smoke: bool):
    """``(fwd, leaves)``: one case's forward, and the inputs that backward
    differentiates."""
    if name in ('ultrafast', 'memory_efficient'):
        import sparse
        N, E = (2000, 20000) if smoke else (100_000, 1_000_000)
        graph = sparse.make_graph(N, E, 5)
        fwd, _, leaves = sparse.build(name, 5, graph, 'cpu')
    elif name == 'hgtconv_dict':
        import pyg_dropin

        import torch_geometric_hgt
        x, ei = pyg_dropin.mag_graph(0.001 if smoke else 0.02, 128, 'cpu')
        torch.manual_seed(0)
        layer = torch_geometric_hgt.HGTConv(128, 128, (list(x), list(ei)),
                                            heads=4)
        leaves = list(x.values())

        def fwd():
            return torch.cat([v.sum(0) for v in layer(x, ei).values()])
    else:
        import dense

        from torch_geometric_hgt import DenseHGTConv
        graph = dense.soft_families(200 if smoke else 33_169)
        layer = DenseHGTConv(dense.D, dense.D, dense.T, dense.R, dense.H)
        leaves = [graph.x]

        def fwd():
            return layer(graph.x, graph.node_types, graph.adj,
                         graph.edge_types)
    return fwd, leaves


def case(name: str, smoke: bool, repeat: int) -> dict:
    """Times (s) and peak memory above the inputs (MB) of one case."""
    torch.set_num_threads(2)
    fwd, leaves = setup(name, smoke)
    with torch.no_grad():
        fwd()  # the code paths and one-time buffers, below the baseline
    base = memory_start('cpu')
    res = {}
    with torch.no_grad():
        res['fwd_s'] = median_time(fwd, repeat=repeat)
    for t in leaves:
        t.requires_grad_()
    res['fwdbwd_s'] = median_time(lambda: fwd().sum().backward(),
                                  repeat=repeat)
    res['peak_above_inputs_mb'] = memory_peak('cpu') - base
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cases', default=','.join(CASES))
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--smoke', action='store_true', help='tiny, seconds')
    p.add_argument('--child', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(case(a.child, a.smoke, a.repeat)))
        return
    out = {}
    for name in a.cases.split(','):
        if name not in CASES:
            raise SystemExit(f"--cases: unknown case {name!r} ({CASES})")
        args = [sys.executable, __file__, '--child', name,
                '--repeat', str(a.repeat)] + (['--smoke'] if a.smoke else [])
        res = subprocess.run(args, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f'{name} failed:\n{res.stderr[-3000:]}')
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
        print(name, out[name], file=sys.stderr, flush=True)
    OUT.mkdir(exist_ok=True)
    (Path(OUT) / 'regression.json').write_text(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
