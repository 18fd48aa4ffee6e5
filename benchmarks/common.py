"""Shared benchmark plumbing: timing, calibration, peak memory in a child
process, JSON/PNG output."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from torch_geometric_hgt import keep_freed_memory

OUT = Path(__file__).parent / 'out'


def sync(device: str):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], device: str = 'cpu',
                repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn`` over ``repeat`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _calibration_product(device: str):
    """``(product, its FLOPs, a)``: :func:`calibrate`'s ``torch.mm`` of
    an ``[n, 128]`` ``a`` by ``[128, 768]``."""
    n = 100_000 if device == 'cpu' else 1_000_000
    a = torch.randn(n, 128, device=device)
    w = torch.randn(128, 768, device=device)
    c = torch.empty(n, 768, device=device)
    return lambda: torch.mm(a, w, out=c), 2 * n * 128 * 768, a


def calibrate(device: str = 'cpu') -> Dict[str, float]:
    """Measured ``torch.mm`` GFLOP/s and ``index_select`` GB/s (read +
    write) on this machine, for the lower bounds."""
    product, flops, a = _calibration_product(device)
    n = a.size(0)
    gflops = flops / median_time(product, device) / 1e9
    idx = torch.randint(0, n, (10 * n // 10, ), device=device)
    g = torch.empty(idx.numel(), 128, device=device)
    t = median_time(lambda: torch.index_select(a, 0, idx, out=g), device)
    gbs = 2 * g.numel() * 4 / t / 1e9
    return {'mm_gflops': gflops, 'gather_gbs': gbs}


def sustained_mm_gflops(device: str = 'cpu', seconds: float = 5.0) -> float:
    """``torch.mm`` GFLOP/s averaged over ``seconds`` of back-to-back
    products of :func:`calibrate`'s shape: the rate a job of that length
    gets, where :func:`calibrate`'s median of short products catches a
    fast moment (on the 2-core VM 100-139 GFLOP/s in 5-s windows of one
    minute, against 130-165 from :func:`calibrate`)."""
    product, flops, _ = _calibration_product(device)
    product()
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        product()
        sync(device)
        count += 1
    return flops * count / (time.perf_counter() - start) / 1e9


def fastest(*cals: Dict[str, float]) -> Dict[str, float]:
    """The fastest rate of each kind over calibrations taken during a run
    (a sample may have only some kinds): the tightest lower bound, not one
    inflated by a slow moment of a noisy machine. Keeps the samples."""
    out = {k: max(c[k] for c in cals if k in c) for k in cals[0]}
    out['samples'] = list(cals)
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB). VmHWM, not ru_maxrss:
    the latter survives exec and would report the parent's peak."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def memory_start(device: str) -> float:
    """Resets the peak counter and returns the current memory (MB): the
    baseline that :func:`memory_peak` is measured against. On CPU the peak
    RSS is reset through ``/proc/self/clear_refs`` (Linux), so run a small
    warm-up first: the library code pages and one-time buffers that the
    first call maps are then below the baseline, not counted as data."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return rss_mb()


def memory_peak(device: str) -> float:
    """Peak memory (MB): CUDA ``max_memory_allocated`` or the peak RSS."""
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


_CHILD: List[Callable[[dict], dict]] = []
_CHILD_FLAGS: List[str] = []
_MALLOC: List[bool] = [False]


def parse_args(parser, child: Callable[[dict], dict]):
    """Adds the options every benchmark has (``--device``, ``--threads``,
    ``--smoke``, ``--keep-freed-memory``, the hidden ``--child``) and
    parses.
    In a child process (:func:`run_child`) runs ``child`` on its JSON
    config, prints the result and exits; else sets the thread count and
    returns the args."""
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--smoke', action='store_true',
                        help='tiny sizes, seconds (CI)')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help="call keep_freed_memory() first, for every "
                        "implementation (default: process settings as a "
                        "user gets them)")
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    _CHILD[:] = [child]
    _CHILD_FLAGS[:] = ['--keep-freed-memory'] if args.keep_freed_memory \
        else []
    if args.keep_freed_memory:
        _MALLOC[:] = [keep_freed_memory()]
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        sys.exit(0)
    torch.set_num_threads(args.threads)
    return args


def run_child(script: str, config: dict, timeout: float = 3600) -> dict:
    """Runs ``script --child JSON`` in a fresh process (so its peak RSS is
    its own) and returns the JSON it prints last. On CUDA the peak is
    ``max_memory_allocated``, which resets, so the config runs in this
    process instead (a fresh CUDA process costs seconds)."""
    if config.get('device', 'cpu').startswith('cuda'):
        torch.cuda.empty_cache()
        return json.loads(json.dumps(_CHILD[0](config)))
    cmd = [sys.executable, script, *_CHILD_FLAGS, '--child',
           json.dumps(config)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f'child failed: {config}\n{res.stderr[-3000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """The CPU's model name, family and model numbers (``lscpu``'s), since
    ratios to the lower bound differ between machines."""
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    return (f"{fields.get('model name', platform.machine())} (family "
            f"{fields.get('cpu family', '?')}, model "
            f"{fields.get('model', '?')})")


def device_name(device: str) -> str:
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    malloc = 'keep_freed_memory()' if _MALLOC[0] else 'default malloc'
    return (f'{cpu_model()}, {torch.get_num_threads()} threads, {malloc}')


def result_name(name: str, device: str) -> str:
    """``name`` on CPU, ``name_cuda`` on CUDA: each device's results keep
    their own files."""
    return name if device == 'cpu' else f"{name}_{device.split(':')[0]}"


def save(name: str, results: dict):
    OUT.mkdir(exist_ok=True)
    path = OUT / f'{name}.json'
    path.write_text(json.dumps(results, indent=1))
    return path


def bar_chart(name: str, title: str, labels: List[str],
              series: Dict[str, List[float]], ylabel: str, log: bool = True):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(series), 1)
    for k, (key, vals) in enumerate(series.items()):
        xs = [i + k * width for i in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width,
               label=key)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels)
    if log:
        ax.set_yscale('log')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / f'{name}.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
