"""Markdown tables from the benchmark JSON files in benchmarks/out/.

    python benchmarks/report.py > /tmp/tables.md
"""
import json
import statistics
from pathlib import Path

OUT = Path(__file__).parent / 'out'


def calibration(cal: dict) -> str:
    """``torch.mm`` and gather rates; the fastest of the samples (start,
    end, and ``torch.mm`` alone around repeated runs) where the run took
    several."""
    text = f"`torch.mm` {cal['mm_gflops']:.0f} GFLOP/s, gather " \
        f"{cal['gather_gbs']:.1f} GB/s"
    if 'samples' in cal:
        text += ' (the fastest of: ' + ', '.join(
            f"{c['mm_gflops']:.0f}" + (f" / {c['gather_gbs']:.1f}"
                                       if 'gather_gbs' in c else '')
            for c in cal['samples']) + ')'
    return text


def fmt(v, unit=''):
    if v is None:
        return '-'
    if unit == 's':
        return f'{v * 1e3:.0f} ms' if v < 1 else f'{v:.2f} s'
    return f'{v:.1f}x' if unit == 'x' else f'{v:.0f}'


def load(name: str):
    """The results of ``out/<name>.json``, or ``None`` if not run."""
    path = OUT / f'{name}.json'
    return json.loads(path.read_text()) if path.exists() else None


def timing_cells(r: dict) -> str:
    """forward | fwd+bwd | peak above inputs | vs loop fwd / fwd+bwd"""
    return (f"{fmt(r['fwd_s'], 's')} | {fmt(r.get('fwdbwd_s'), 's')} | "
            f"{fmt(r['peak_above_inputs_mb'])} | "
            f"{fmt(r.get('speedup_vs_loop_fwd_s'), 'x')} / "
            f"{fmt(r.get('speedup_vs_loop_fwdbwd_s'), 'x')}")


def sparse(name='sparse'):
    d = load(name)
    if d is None:
        return
    cal = d['calibration']
    print(f"### Sparse layers ({d['device']}, torch {d['torch']})\n")
    print(f"Calibration in the same run: {calibration(cal)}. 6 node types, "
          f"128 -> 128, 4 heads, use_norm=False, eval mode. Max abs "
          f"difference of each output to `LoopHGTConv`: "
          f"{d['equality_max_abs_diff_vs_loop']}.\n")
    print('| nodes / edges / R | layer | forward | fwd+bwd | peak above '
          'inputs (MB) | vs loop fwd / fwd+bwd | vs PyG fwd | / lower '
          'bound fwd / fwd+bwd |')
    print('|---|---|---|---|---|---|---|---|')
    for r in d['rows']:
        lb = (f"{r['ratio_to_lower_bound_fwd_s']:.1f}x / "
              f"{r['ratio_to_lower_bound_fwdbwd_s']:.1f}x"
              if 'ratio_to_lower_bound_fwdbwd_s' in r else
              f"{r['ratio_to_lower_bound_fwd_s']:.1f}x / -")
        print(f"| {r['N']:,} / {r['E']:,} / {r['R']} | {r['impl']} | "
              f"{timing_cells(r)} | "
              f"{fmt(r.get('speedup_vs_pyg_fwd_s'), 'x')} | {lb} |")
    print()


def dense(name='dense'):
    d = load(name)
    if d is None:
        return
    cal = d['calibration']
    print(f"### Soft family graphs ({d['device']}, torch {d['torch']})\n")
    print(f"N = 8, 128-d, 4 heads, 6 types, 5 relations; "
          f"{calibration(cal)} in the same run. The loop is "
          f"timed on 20 families and scaled per family. Max abs "
          f"differences: {d['equality']}. 'sparse' is `{d['sparse_layer']}` "
          f"on `dense_to_batch` of the hard graphs (about half the pairs "
          f"are edges).\n")
    print('| families | layer | forward | fwd+bwd | peak above inputs (MB) '
          '| vs loop fwd / fwd+bwd | lower bound fwd+bwd |')
    print('|---|---|---|---|---|---|---|')
    for r in d['rows']:
        print(f"| {r['B']:,} | {r['impl']} | {timing_cells(r)} | "
              f"{fmt(r.get('lower_bound_fwdbwd_s'), 's')} |")
    print()
    model = d['rows'][-1]
    if 'ratio_to_lower_bound' in model:
        print(f"2-layer `DenseHGT`, {model['B']:,} families, "
              f"forward+backward: {fmt(model['fwdbwd_s'], 's')}, "
              f"{model['ratio_to_lower_bound']:.2f}x the bound at the run's "
              f"fastest calibration.")
    around = model.get('between_calibrations')
    if around:
        print(f"\nRun again {len(around)} times, each between two "
              f"calibrations and two 5-s sustained `torch.mm` loops, and "
              f"compared with the faster of each pair:\n")
        print('| fwd+bwd | calibration | ratio | sustained | ratio |')
        print('|---|---|---|---|---|')
        for a in around:
            print(f"| {fmt(a['fwdbwd_s'], 's')} | "
                  f"{a['mm_gflops']:.0f} GFLOP/s "
                  f"| {a['ratio_to_lower_bound']:.2f}x | "
                  f"{a['sustained_mm_gflops']:.0f} GFLOP/s | "
                  f"{a['ratio_to_sustained_bound']:.2f}x |")
        mid = [statistics.median(a[k] for a in around) for k in
               ('ratio_to_lower_bound', 'ratio_to_sustained_bound')]
        print(f"| median | | {mid[0]:.2f}x | | {mid[1]:.2f}x |")
    print()


def legacy(name='legacy'):
    d = load(name)
    if d is None:
        return
    f, full = d['per_family'], d['full']
    print(f"### Legacy layer ({d['device']}, torch {d['torch']})\n")
    print(f"Max abs differences loop vs vectorized: {d['equality']}.\n")
    print('| per family, one layer | loop (original) | '
          'DifferentiableDenseHGTConv | speed-up |')
    print('|---|---|---|---|')
    print(f"| forward | {f['loop_fwd_ms']:.1f} ms | "
          f"{f['vectorized_fwd_ms']:.3f} ms | {f['speedup_fwd']:.0f}x |")
    print(f"| forward+backward | {f['loop_fwdbwd_ms']:.1f} ms | "
          f"{f['vectorized_fwdbwd_ms']:.3f} ms | "
          f"{f['speedup_fwdbwd']:.0f}x |")
    print(f"\n2-layer `DifferentiableHGT`, {full['families']:,} families, "
          f"forward+backward in one call: {fmt(full['fwdbwd_s'], 's')}, peak "
          f"memory {full['peak_mb']:.0f} MB "
          f"({full['peak_above_inputs_mb']:.0f} MB above the inputs), "
          f"chunk_size={full['chunk_size']}.\n")


if __name__ == '__main__':
    for suffix in ('', '_cuda'):
        legacy('legacy' + suffix)
        dense('dense' + suffix)
        sparse('sparse' + suffix)
