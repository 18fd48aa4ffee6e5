"""The users' original dense layer (loop form) against the vectorized
``DifferentiableDenseHGTConv``: equality first, then per-family time and the
full-population 2-layer forward+backward time and peak memory.

    python benchmarks/legacy.py                # full run (minutes on 2 cores)
    python benchmarks/legacy.py --smoke        # seconds
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (bar_chart, device_name, median_time,  # noqa: E402
                    memory_peak, memory_start, parse_args, result_name,
                    run_child, save)

from torch_geometric_hgt import (DifferentiableDenseHGTConv,  # noqa: E402
                                 DifferentiableHGT,
                                 LoopDifferentiableDenseHGTConv,
                                 convert_graphvae_to_differentiable)

T, R, N, D, H = 6, 5, 8, 128, 4


def families(B: int, seed: int = 0, device: str = 'cpu'):
    """Soft families as the users make them from GraphVAE logits."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, N, N, generator=g),
              torch.randn(B, N, N, R, generator=g),
              torch.randn(B, N, T, generator=g))
    data = convert_graphvae_to_differentiable(logits, generator=g)
    x = torch.randn(B, N, D, generator=g)
    return [t.to(device) for t in (x, data['node_types'], data['adj_matrix'],
                                   data['edge_types'])]


def check_equal(device: str) -> dict:
    loop = LoopDifferentiableDenseHGTConv(D, D, T, R, H).to(device).eval()
    fast = DifferentiableDenseHGTConv(D, D, T, R, H).to(device).eval()
    fast.load_state_dict(loop.state_dict())
    inputs = [t.requires_grad_() for t in families(4, seed=1, device=device)]
    diffs = {}
    outs, grads = [], []
    weight = torch.randn(4, N, D, generator=torch.Generator().manual_seed(2))
    for layer in (loop, fast):
        out = layer(*inputs)
        g = torch.autograd.grad((out * weight.to(device)).sum(), inputs)
        outs.append(out)
        grads.append(g)
    diffs['value'] = float((outs[0] - outs[1]).abs().max())
    for name, a, b in zip(('x', 'node_types', 'adj', 'edge_types'), *grads):
        diffs[f'grad_{name}'] = float((a - b).abs().max())
    return diffs


def per_family(device: str, loop_families: int, fast_families: int) -> dict:
    loop = LoopDifferentiableDenseHGTConv(D, D, T, R, H).to(device).eval()
    fast = DifferentiableDenseHGTConv(D, D, T, R, H).to(device).eval()
    res = {}
    for name, layer, B in (('loop', loop, loop_families),
                           ('vectorized', fast, fast_families)):
        inputs = families(B, device=device)
        with torch.no_grad():
            res[f'{name}_fwd_ms'] = median_time(
                lambda: layer(*inputs), device, repeat=3) / B * 1e3
        x = inputs[0].requires_grad_()

        def fwd_bwd():
            layer(x, *inputs[1:]).sum().backward()
        res[f'{name}_fwdbwd_ms'] = median_time(fwd_bwd, device,
                                               repeat=3) / B * 1e3
    res['speedup_fwd'] = res['loop_fwd_ms'] / res['vectorized_fwd_ms']
    res['speedup_fwdbwd'] = res['loop_fwdbwd_ms'] / res['vectorized_fwdbwd_ms']
    return res


def child(cfg: dict) -> dict:
    """2-layer DifferentiableHGT forward+backward over ``B`` families."""
    torch.set_num_threads(cfg['threads'])
    if not cfg.get('warm'):  # same code paths on a tiny batch first
        child(dict(cfg, families=2, warm=True, repeat=1))
    device = cfg['device']
    model = DifferentiableHGT(D, D, D, T, R, n_heads=H, n_layers=2,
                              chunk_size=cfg['chunk_size']).to(device)
    _, P, adj, E = families(cfg['families'], device=device)
    P.requires_grad_()
    data = {'node_types': P, 'adj_matrix': adj, 'edge_types': E}
    base = memory_start(device)
    times = []
    for _ in range(cfg['repeat']):
        t = time.perf_counter()
        model(data).sum().backward()
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = memory_peak(device)
    return {'fwdbwd_s': sorted(times)[len(times) // 2], 'peak_mb': peak,
            'base_mb': base, 'peak_above_inputs_mb': peak - base}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--families', type=int, default=33169)
    p.add_argument('--loop-families', type=int, default=6)
    p.add_argument('--chunk-size', default='auto')
    args = parse_args(p, child)
    if args.smoke:
        args.families, args.loop_families = 64, 1
    chunk = args.chunk_size if args.chunk_size in ('auto', 'None') \
        else int(args.chunk_size)
    chunk = None if chunk == 'None' else chunk
    from tqdm import tqdm
    steps = tqdm(total=3, desc='legacy benchmark', disable=None)
    steps.set_postfix_str('equality')
    diffs = check_equal(args.device)
    worst = max(diffs.values())
    print(f'max abs difference loop vs vectorized: {diffs}')
    if worst > 1e-4:
        sys.exit(f'NOT EQUAL (max abs diff {worst:.3g}); not timing')
    steps.update()
    steps.set_postfix_str('per family')
    fam = per_family(args.device, args.loop_families,
                     min(args.families, 1024))
    steps.update()
    steps.set_postfix_str(f'{args.families} families, 2 layers')
    full = run_child(__file__, {'device': args.device,
                                'threads': args.threads,
                                'families': args.families,
                                'chunk_size': chunk,
                                'repeat': 1 if args.smoke else 3})
    steps.update()
    steps.close()
    results = {'device': device_name(args.device), 'torch': torch.__version__,
               'sizes': dict(N=N, T=T, R=R, dim=D, heads=H),
               'equality': diffs, 'per_family': fam,
               'full': dict(full, families=args.families, chunk_size=chunk)}
    print(json.dumps(results, indent=1))
    if not args.smoke:
        name = result_name('legacy', args.device)
        save(name, results)
        bar_chart(name, f'Legacy dense layer, ms per family '
                  f'({results["device"]})', ['forward', 'forward+backward'],
                  {'loop (original)': [fam['loop_fwd_ms'],
                                       fam['loop_fwdbwd_ms']],
                   'DifferentiableDenseHGTConv': [
                       fam['vectorized_fwd_ms'], fam['vectorized_fwdbwd_ms']]},
                  'ms per family (log)')


if __name__ == '__main__':
    main()
