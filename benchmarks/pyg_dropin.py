"""PyG's HGTConv against torch_geometric_hgt.HGTConv through the dict API,
with the same weights, on a random graph shaped like ogbn-mag.

    python benchmarks/pyg_dropin.py                 # 2% of ogbn-mag, CPU
    python benchmarks/pyg_dropin.py --device cuda --scale 0.1

Each setting (default process settings, then ``keep_freed_memory()``) runs
in a fresh process. Both layers get every conversion (dict -> one node set
-> dict) inside the timed call. Writes ``out/pyg_dropin[_cuda].json`` and
prints the markdown rows of ``RESULTS.md``.
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / 'out'

#: ogbn-mag's node and edge counts (OGB's statistics)
MAG_NODES = {'paper': 736_389, 'author': 1_134_649, 'institution': 8_740,
             'field_of_study': 59_965}
MAG_EDGES = {('author', 'writes', 'paper'): 7_145_660,
             ('paper', 'cites', 'paper'): 5_416_271,
             ('paper', 'has_topic', 'field_of_study'): 7_505_078,
             ('author', 'affiliated_with', 'institution'): 1_043_998}


def mag_graph(scale: float, channels: int, device: str, seed: int = 0):
    """``(x_dict, edge_index_dict)``: ogbn-mag's types at ``scale`` of its
    counts, uniform random endpoints, every edge type with its reverse."""
    g = torch.Generator().manual_seed(seed)
    n = {t: max(1, round(c * scale)) for t, c in MAG_NODES.items()}
    x = {t: torch.randn(c, channels, generator=g).to(device)
         for t, c in n.items()}
    ei = {}
    for (s, r, t), c in MAG_EDGES.items():
        e = max(1, round(c * scale))
        idx = torch.stack([torch.randint(n[s], (e, ), generator=g),
                           torch.randint(n[t], (e, ), generator=g)])
        ei[(s, r, t)] = idx.to(device)
        ei[(t, f'rev_{r}', s)] = idx.flip(0).to(device)
    return x, ei


def median_time(fn, device: str, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(cfg: dict) -> dict:
    from torch_geometric.nn import HGTConv as PyGHGTConv

    import torch_geometric_hgt
    if cfg['keep_freed_memory']:
        torch_geometric_hgt.keep_freed_memory()
    torch.set_num_threads(cfg['threads'])
    device, C = cfg['device'], cfg['channels']
    x, ei = mag_graph(cfg['scale'], C, device)
    metadata = (list(x), list(ei))
    torch.manual_seed(0)
    layers = {'pyg': PyGHGTConv(C, C, metadata, heads=cfg['heads'])}
    ours = torch_geometric_hgt.HGTConv(C, C, metadata, heads=cfg['heads'])
    ours.load_state_dict(layers['pyg'].state_dict())
    layers['ours'] = ours
    xg = {t: v.clone().requires_grad_() for t, v in x.items()}

    def fwd(layer):
        with torch.no_grad():
            return layer(x, ei)

    def fwd_bwd(layer):
        out = layer(xg, ei)
        sum(v.sum() for v in out.values()).backward()

    res = {}
    for name, layer in layers.items():
        layer.to(device)
        res[f'{name}_fwd_s'] = median_time(lambda: fwd(layer), device,
                                           cfg['repeat'])
        res[f'{name}_fwdbwd_s'] = median_time(lambda: fwd_bwd(layer),
                                              device, cfg['repeat'])
    a, b = fwd(layers['pyg']), fwd(layers['ours'])
    res['max_abs_diff'] = max(float((a[k] - b[k]).abs().max()) for k in a)
    res['nodes'] = sum(v.size(0) for v in x.values())
    res['edges'] = sum(v.size(1) for v in ei.values())
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--scale', type=float, default=0.02)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--channels', type=int, default=128)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--smoke', action='store_true', help='tiny, seconds')
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    if args.smoke:
        args.scale, args.repeat = 0.0005, 1
    settings = ['default'] if args.device.startswith('cuda') else \
        ['default', 'keep_freed_memory()']
    rows = {}
    for setting in settings:
        cfg = dict(vars(args), keep_freed_memory=setting != 'default')
        del cfg['child'], cfg['smoke']
        run = subprocess.run(
            [sys.executable, __file__, '--child', json.dumps(cfg)],
            capture_output=True, text=True, check=True)
        rows[setting] = json.loads(run.stdout.strip().splitlines()[-1])
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                            capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    device = torch.cuda.get_device_name(args.device) if \
        args.device.startswith('cuda') else \
        f'{platform.machine()} CPU, {args.threads} threads'
    result = {'device': device, 'torch': torch.__version__, 'commit': commit,
              'date': time.strftime('%Y-%m-%d'), 'args': vars(args),
              'rows': rows}
    OUT.mkdir(exist_ok=True)
    name = 'pyg_dropin' + ('' if args.device == 'cpu' else '_cuda')
    (OUT / f'{name}.json').write_text(json.dumps(result, indent=1))
    r0 = next(iter(rows.values()))
    print(f"{device}, torch {torch.__version__}, commit {commit}, "
          f"{result['date']}; {args.scale:g} of ogbn-mag: {r0['nodes']:,} "
          f"nodes, {r0['edges']:,} edges, {args.channels} -> "
          f"{args.channels}, {args.heads} heads; median of {args.repeat}; "
          f"max abs difference of the outputs {r0['max_abs_diff']:.1e}\n")
    print('| process settings | PyG fwd | ours fwd | speed-up | PyG fwd+bwd '
          '| ours fwd+bwd | speed-up |')
    print('|---|---|---|---|---|---|---|')
    for setting, r in rows.items():
        print(f"| {setting} | {r['pyg_fwd_s'] * 1e3:.0f} ms | "
              f"{r['ours_fwd_s'] * 1e3:.0f} ms | "
              f"{r['pyg_fwd_s'] / r['ours_fwd_s']:.1f}x | "
              f"{r['pyg_fwdbwd_s'] * 1e3:.0f} ms | "
              f"{r['ours_fwdbwd_s'] * 1e3:.0f} ms | "
              f"{r['pyg_fwdbwd_s'] / r['ours_fwdbwd_s']:.1f}x |")


if __name__ == '__main__':
    main()
