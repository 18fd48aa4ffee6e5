"""Soft family graphs: ``LoopDenseHGTConv`` (the original loop shape),
``DenseHGTConv`` and the sparse layer on the converted hard batch.
Equality first, then forward and forward+backward time and peak memory for
B in (100, 1000, 33169) families (N = 8, 128-d, 4 heads, 6 types, 5
relations), ratios, and the FLOP lower bound from a ``torch.mm``
calibration in the same run; then a 2-layer ``DenseHGT`` over all families.

    python benchmarks/dense.py            # full run (~10 min on 2 cores)
    python benchmarks/dense.py --smoke    # seconds
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (bar_chart, calibrate, device_name, fastest,  # noqa: E402
                    median_time, memory_peak, memory_start, parse_args,
                    result_name, run_child, save, sustained_mm_gflops)

from torch_geometric_hgt import (DenseHGT, DenseHGTConv,  # noqa: E402
                                 LoopDenseHGTConv, SoftGraph, dense_to_batch,
                                 soft_graph_from_logits)
from torch_geometric_hgt.conv import CONVS  # noqa: E402

T, R, N, D, H = 6, 5, 8, 128, 4
SPARSE = 'ultrafast' if 'ultrafast' in CONVS else 'vectorized'
LOOP_FAMILIES = 20  # the loop is timed on this many and scaled per family


def soft_families(B: int, seed: int = 0, device: str = 'cpu') -> SoftGraph:
    g = torch.Generator().manual_seed(seed)
    graph = soft_graph_from_logits(
        torch.randn(B, N, N, generator=g) * 2 + 1,
        torch.randn(B, N, N, R, generator=g),
        torch.randn(B, N, T, generator=g), generator=g,
        x=torch.randn(B, N, D, generator=g))
    return graph.to(device)


def layer_flops(B: int, layers: int = 1) -> float:
    """Matmul FLOPs of one DenseHGTConv forward (bilinear form, soft types:
    all T typed maps are needed)."""
    F = D
    d = F // H
    per = (2 * B * N * D * 3 * F * T      # K, Q, V of every type
           + 2 * 2 * B * N * R * H * d * d  # A and M per (node, relation)
           + 2 * 2 * B * H * N * R * N * d  # scores and messages
           + 2 * B * N * F * F * T)         # output map of every type
    return per * layers


def check_equal(device: str) -> dict:
    loop = LoopDenseHGTConv(D, D, T, R, H).to(device).eval()
    fast = DenseHGTConv(D, D, T, R, H).to(device).eval()
    fast.load_state_dict(loop.state_dict())
    g = soft_families(3, seed=1, device=device)
    inputs = [t.clone().requires_grad_() for t in
              (g.x, g.node_types, g.adj, g.edge_types)]
    w = torch.randn(3, N, D, device=device)
    res = []
    for layer in (loop, fast):
        out = layer(*inputs)
        res.append((out.detach(),
                    torch.autograd.grad((out * w).sum(), inputs)))
    diffs = {'soft_value': float((res[0][0] - res[1][0]).abs().max())}
    for name, a, b in zip(('x', 'node_types', 'adj', 'edge_types'),
                          res[0][1], res[1][1]):
        diffs[f'soft_grad_{name}'] = float((a - b).abs().max())
    hard = soft_families(50, seed=2, device=device).hard()
    sparse = CONVS[SPARSE](D, D, T, R, H).to(device).eval()
    sparse.load_state_dict(fast.state_dict())
    batch = dense_to_batch(hard)
    with torch.no_grad():
        want = sparse(batch.x, batch.node_type, batch.edge_index,
                      batch.edge_type)
        got = fast(hard.x, hard.node_types, hard.adj, hard.edge_types)
    diffs['hard_dense_vs_sparse'] = float((got.reshape(-1, D) - want)
                                          .abs().max())
    return diffs


def child(cfg: dict) -> dict:
    torch.set_num_threads(cfg['threads'])
    if not cfg.get('warm'):  # same code paths on a tiny batch first
        child(dict(cfg, B=2, warm=True, repeat=1))
    device, B, impl = cfg['device'], cfg['B'], cfg['impl']
    torch.manual_seed(0)
    graph = soft_families(B, device=device)
    if impl == 'model':
        model = DenseHGT(D, D, D, T, R, n_heads=H, n_layers=2).to(device)
        inputs = [graph]
        graph.node_types.requires_grad_()

        def fwd():
            return model(graph)
    elif impl == 'sparse':
        layer = CONVS[SPARSE](D, D, T, R, H).to(device)
        batch = dense_to_batch(graph)
        inputs = [batch.x, batch.node_type, batch.edge_index,
                  batch.edge_type]

        def fwd():
            return layer(*inputs)
    else:
        cls = LoopDenseHGTConv if impl == 'loop' else DenseHGTConv
        layer = cls(D, D, T, R, H).to(device)
        inputs = [graph.x, graph.node_types, graph.adj, graph.edge_types]

        def fwd():
            return layer(*inputs)
    x = graph.x
    x.requires_grad_()
    if cfg.get('bracketed'):
        return {'bracketed': bracketed(
            lambda: fwd().sum().backward(), device, cfg['repeat'])}
    base = memory_start(device)
    with torch.no_grad():
        t_fwd = median_time(fwd, device, repeat=cfg['repeat'], warmup=1)
    # a warm-up of its own: the backward's buffers are first touched
    # (page faults) in its first runs, not in the forward's
    t_bwd = median_time(lambda: fwd().sum().backward(), device,
                        repeat=cfg['repeat'], warmup=1)
    peak = memory_peak(device)
    return {'fwd_s': t_fwd, 'fwdbwd_s': t_bwd, 'peak_mb': peak,
            'peak_above_inputs_mb': peak - base}


def bracketed(fn, device: str, repeat: int) -> list:
    """``[seconds, GFLOP/s, sustained GFLOP/s]`` of each of ``repeat`` runs
    of ``fn`` (after one warm-up): the faster of two :func:`calibrate`
    rates and of two 5-s :func:`sustained_mm_gflops` taken just before and
    just after it. The machine's speed drifts within a run (once 157 then
    81 GFLOP/s), so each run is also compared with the speed the machine
    had around it."""
    fn()
    out = []
    for _ in range(repeat):
        burst = [calibrate(device)['mm_gflops']]
        sustained = [sustained_mm_gflops(device)]
        t = median_time(fn, device, repeat=1, warmup=0)
        sustained.append(sustained_mm_gflops(device))
        burst.append(calibrate(device)['mm_gflops'])
        out.append([t, max(burst), max(sustained)])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', default='100,1000,33169')
    args = parse_args(p, child)
    sizes = [64] if args.smoke else [int(s) for s in args.sizes.split(',')]
    from tqdm import tqdm
    configs = [(impl, B) for B in sizes
               for impl in ('loop', 'dense', 'sparse')] + \
        [('model', sizes[-1])]
    bar = tqdm(total=len(configs) + 3, desc='dense benchmark', disable=None)
    bar.set_postfix_str('equality')
    diffs = check_equal(args.device)
    print(f'max abs differences: {diffs}')
    if max(diffs.values()) > 1e-4:
        sys.exit(f'NOT EQUAL: {diffs}; not timing')
    bar.update()
    bar.set_postfix_str('calibration')
    cal = calibrate(args.device)
    bar.update()
    rows = []
    for impl, B in configs:
        bar.set_postfix_str(f'{impl} B={B}')
        measured = min(B, LOOP_FAMILIES) if impl == 'loop' else B
        r = run_child(__file__, {'device': args.device, 'B': measured,
                                 'impl': impl, 'threads': args.threads,
                                 'repeat': 1 if impl == 'loop' or
                                 args.smoke else 3})
        scale = B / measured
        r.update(impl=impl, B=B, measured_families=measured,
                 fwd_s=r['fwd_s'] * scale, fwdbwd_s=r['fwdbwd_s'] * scale)
        rows.append(r)
        bar.update()
    around = []
    if not args.smoke:
        bar.set_postfix_str('model between calibrations')
        around = run_child(__file__, {
            'device': args.device, 'B': sizes[-1], 'impl': 'model',
            'threads': args.threads, 'repeat': 3,
            'bracketed': True})['bracketed']
    bar.update()
    bar.close()
    cal = fastest(cal, calibrate(args.device),
                  *[{'mm_gflops': g} for _, g, _ in around])
    by = {(r['impl'], r['B']): r for r in rows}
    for B in sizes:
        flops = layer_flops(B)
        by[('dense', B)]['lower_bound_fwd_s'] = flops / cal['mm_gflops'] / 1e9
        by[('dense', B)]['lower_bound_fwdbwd_s'] = \
            3 * flops / cal['mm_gflops'] / 1e9
        for key in ('fwd_s', 'fwdbwd_s'):
            by[('dense', B)][f'speedup_vs_loop_{key}'] = \
                by[('loop', B)][key] / by[('dense', B)][key]
    model = by[('model', sizes[-1])]
    model['lower_bound_fwdbwd_s'] = 3 * layer_flops(sizes[-1], 2) / \
        cal['mm_gflops'] / 1e9
    model['ratio_to_lower_bound'] = model['fwdbwd_s'] / \
        model['lower_bound_fwdbwd_s']
    model_flops = 3 * layer_flops(sizes[-1], 2)
    model['between_calibrations'] = [
        {'fwdbwd_s': t, 'mm_gflops': g, 'sustained_mm_gflops': sg,
         'ratio_to_lower_bound': t * g * 1e9 / model_flops,
         'ratio_to_sustained_bound': t * sg * 1e9 / model_flops}
        for t, g, sg in around]
    results = {'device': device_name(args.device), 'torch': torch.__version__,
               'sizes': dict(N=N, T=T, R=R, dim=D, heads=H),
               'sparse_layer': SPARSE, 'calibration': cal,
               'equality': diffs, 'rows': rows}
    print(json.dumps(results, indent=1))
    if not args.smoke:
        name = result_name('dense', args.device)
        save(name, results)
        labels = [f'B={B}' for B in sizes]
        bar_chart(name, f'Soft family graphs, forward+backward '
                  f'({results["device"]})', labels,
                  {impl: [by[(impl, B)]['fwdbwd_s'] for B in sizes]
                   for impl in ('loop', 'dense', 'sparse')}, 'seconds (log)')


if __name__ == '__main__':
    main()
