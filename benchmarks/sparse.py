"""Sparse HGT layers on random typed graphs: equality with ``LoopHGTConv``
(and PyG's ``HGTConv`` through ``to_pyg``) first, then median forward and
forward+backward time, peak memory (CPU: peak RSS of a child process per
configuration; CUDA: ``max_memory_allocated``), speed-ups against the loop
and PyG measured in the same run, and a lower bound from a ``torch.mm`` and
gather calibration done in the same run.

    python benchmarks/sparse.py                     # full CPU run (~30 min)
    python benchmarks/sparse.py --smoke             # seconds
    python benchmarks/sparse.py --device cuda       # GPU

Sizes are ``nodes:edges:relations``; 6 node types, 128 -> 128, 4 heads,
``use_norm=False`` (PyG's layer has no LayerNorm), eval mode (no dropout).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (bar_chart, calibrate, device_name, fastest,  # noqa: E402
                    median_time, memory_peak, memory_start, parse_args,
                    result_name, run_child, save)

from torch_geometric_hgt.conv import CONVS  # noqa: E402

T, D, H = 6, 128, 4
IMPLS = ['loop', 'vectorized', 'ultrafast', 'memory_efficient', 'pyg']


def make_graph(N: int, E: int, R: int, seed: int = 0, device: str = 'cpu'):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    node_type = torch.randint(0, T, (N, ), generator=g)
    edge_index = torch.randint(0, N, (2, E), generator=g)
    edge_type = torch.randint(0, R, (E, ), generator=g)
    return [t.to(device) for t in (x, node_type, edge_index, edge_type)]


def to_hetero(x, node_type, edge_index, edge_type, R):
    """The same graph as PyG ``HeteroData`` dicts (node type ``str(t)``,
    edge type ``(str(s), str(r), str(t))``), and each node's local index."""
    N = x.size(0)
    local = torch.empty(N, dtype=torch.long, device=x.device)
    x_dict = {}
    for t in range(T):
        sel = (node_type == t).nonzero().view(-1)
        local[sel] = torch.arange(sel.numel(), device=x.device)
        x_dict[str(t)] = x[sel]
    src, dst = edge_index
    key = (node_type[src] * R + edge_type) * T + node_type[dst]
    ei_dict, rel_ids = {}, []
    for k in torch.unique(key).tolist():
        sel = key == k
        s, r, t = k // (R * T), (k // T) % R, k % T
        ei_dict[(str(s), str(r), str(t))] = torch.stack(
            [local[src[sel]], local[dst[sel]]])
        rel_ids.append(r)
    metadata = ([str(t) for t in range(T)], list(ei_dict))
    return x_dict, ei_dict, metadata, rel_ids


def build(impl: str, R: int, graph, device: str, seed: int = 0):
    """(forward callable, parameters) of one implementation; all share the
    weights of a ``LoopHGTConv`` made from ``seed``."""
    torch.manual_seed(seed)
    ref = CONVS['loop'](D, D, T, R, H, use_norm=False, dropout=0.0)
    x, node_type, edge_index, edge_type = graph
    if impl == 'pyg':
        x_dict, ei_dict, metadata, rel_ids = to_hetero(*graph, R)
        conv = ref.to_pyg(metadata, rel_ids).to(device).eval()
        order = torch.argsort(node_type, stable=True)

        def fwd(x_dict=x_dict):
            out = conv(x_dict, ei_dict)
            parts = [out.get(str(t)) for t in range(T)]
            parts = [p if p is not None else torch.zeros_like(x_dict[str(t)])
                     for t, p in enumerate(parts)]
            y = torch.cat(parts)
            return torch.empty_like(y).index_copy_(0, order, y)
        return fwd, conv, list(x_dict.values())
    layer = CONVS[impl](D, D, T, R, H, use_norm=False, dropout=0.0,
                        validate=False)
    layer.load_state_dict(ref.state_dict())
    layer = layer.to(device).eval()

    def fwd():
        return layer(x, node_type, edge_index, edge_type)
    return fwd, layer, [x]


def lower_bound(N: int, E: int, R: int, cal: dict) -> float:
    """Forward lower bound (s): node-level GEMMs at the measured mm rate
    plus three gathers of ``E x 128`` floats at the measured gather rate."""
    d = D // H
    pairs = min(N * R, E)
    flops = 2 * N * D * 3 * D + 2 * N * D * D + 2 * 2 * pairs * H * d * d
    gather_bytes = 3 * 2 * E * D * 4
    return flops / cal['mm_gflops'] / 1e9 + \
        gather_bytes / cal['gather_gbs'] / 1e9


def child(cfg: dict) -> dict:
    torch.set_num_threads(cfg['threads'])
    device = cfg['device']
    if not cfg.get('warm'):  # same code paths on a tiny graph first
        child(dict(cfg, N=64, E=256, warm=True, repeat=1, warmup=0))
    graph = make_graph(cfg['N'], cfg['E'], cfg['R'], device=device)
    fwd, module, leaves = build(cfg['impl'], cfg['R'], graph, device)
    base = memory_start(device)
    res = {}
    with torch.no_grad():
        res['fwd_s'] = median_time(fwd, device, repeat=cfg['repeat'],
                                   warmup=cfg['warmup'])
    if cfg['backward']:
        for t in leaves:
            t.requires_grad_()

        def fwd_bwd():
            fwd().sum().backward()
        res['fwdbwd_s'] = median_time(fwd_bwd, device, repeat=cfg['repeat'],
                                      warmup=cfg['warmup'])
    peak = memory_peak(device)
    res.update(peak_mb=peak, peak_above_inputs_mb=peak - base)
    return res


def check_equal(N, E, R, impls, device) -> dict:
    """Max abs difference of each layer's output to the loop's (or, when
    the loop is not timed, to the vectorized layer's, run here if need
    be)."""
    graph = make_graph(N, E, R, seed=1, device=device)
    ref_impl = 'loop' if 'loop' in impls else 'vectorized'
    outs = {}
    for impl in dict.fromkeys([ref_impl] + impls):
        fwd, _, _ = build(impl, R, graph, device, seed=1)
        with torch.no_grad():
            outs[impl] = fwd()
    ref = outs.pop(ref_impl)
    return {k: float((v - ref).abs().max()) for k, v in outs.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', default='10000:50000:5,100000:1000000:5,'
                   '20000:200000:40')
    p.add_argument('--impls', default=','.join(IMPLS))
    p.add_argument('--huge', default='1000000:10000000:5',
                   help="memory_efficient only ('' to skip)")
    p.add_argument('--max-backward-s', type=float, default=200,
                   help='skip forward+backward where the forward alone '
                   'predicts more than this (PyG at 100k/1M: > 20 min)')
    args = parse_args(p, child)
    if args.smoke:
        args.sizes, args.huge = '2000:10000:5,500:2000:40', ''
    sizes = [tuple(int(v) for v in s.split(':'))
             for s in args.sizes.split(',')]
    impls = args.impls.split(',')
    configs = [(s, i) for s in sizes for i in impls]
    if args.huge:
        configs.append((tuple(int(v) for v in args.huge.split(':')),
                        'memory_efficient'))
    from tqdm import tqdm
    bar = tqdm(total=len(sizes) + 1 + len(configs), desc='sparse benchmark',
               disable=None)
    bar.set_postfix_str('calibration')
    cal = calibrate(args.device)
    bar.update()
    equality = {}
    for N, E, R in sizes:
        bar.set_postfix_str(f'equality {N}/{E}/R={R}')
        equality[f'{N}:{E}:{R}'] = check_equal(N, E, R, impls, args.device)
        worst = max(equality[f'{N}:{E}:{R}'].values())
        if worst > 1e-4:
            sys.exit(f'NOT EQUAL at {N}:{E}:{R}: {equality}; not timing')
        bar.update()
    rows = []
    for (N, E, R), impl in configs:
        bar.set_postfix_str(f'{impl} {N}/{E}/R={R}')
        # a smoke run checks that every path runs: one child each (PyG's
        # backward is too slow for it)
        cfg = {'device': args.device, 'threads': args.threads, 'N': N,
               'E': E, 'R': R, 'impl': impl,
               'backward': args.smoke and impl != 'pyg',
               'repeat': 1 if impl in ('loop', 'pyg') or N >= 10**6 else 3,
               'warmup': 0 if impl in ('loop', 'pyg') else 1}
        r = run_child(__file__, cfg)
        # predicted backward / forward: ~3 here, hundreds for PyG without
        # pyg-lib (its typed linears fall back to per-type slices)
        factor = 1000 if impl == 'pyg' else 12
        if not args.smoke and r['fwd_s'] * factor <= args.max_backward_s:
            cfg['backward'] = True
            r = run_child(__file__, cfg)
        r.update(impl=impl, N=N, E=E, R=R)
        rows.append(r)
        bar.update()
    bar.close()
    cal = fastest(cal, calibrate(args.device))
    for r in rows:
        r['lower_bound_fwd_s'] = lower_bound(r['N'], r['E'], r['R'], cal)
        r['lower_bound_fwdbwd_s'] = 3 * r['lower_bound_fwd_s']
    by = {(r['impl'], r['N'], r['E'], r['R']): r for r in rows}
    for r in rows:
        for key in ('fwd_s', 'fwdbwd_s'):
            for base in ('loop', 'pyg'):
                other = by.get((base, r['N'], r['E'], r['R']), {})
                if key in r and key in other:
                    r[f'speedup_vs_{base}_{key}'] = other[key] / r[key]
            if key in r:
                r[f'ratio_to_lower_bound_{key}'] = \
                    r[key] / r[f'lower_bound_{key}']
    results = {'device': device_name(args.device), 'torch': torch.__version__,
               'sizes': dict(T=T, dim=D, heads=H), 'calibration': cal,
               'equality_max_abs_diff_vs_loop': equality, 'rows': rows}
    print(json.dumps(results, indent=1))
    if not args.smoke:
        name = result_name('sparse', args.device)
        save(name, results)
        labels = [f'{N // 1000}k/{E // 1000}k R={R}' for N, E, R in sizes]
        bar_chart(name, f'Sparse HGT forward+backward '
                  f'({results["device"]})', labels,
                  {impl: [by.get((impl, *s), {}).get('fwdbwd_s')
                          for s in sizes] for impl in impls},
                  'seconds (log; missing = skipped)')


if __name__ == '__main__':
    main()
