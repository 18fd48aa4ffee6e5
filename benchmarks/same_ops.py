"""Whether the working tree runs the same operators as a previous commit on
the four layers of ``regression.py``, with bitwise-equal outputs and input
gradients: what proves a pure refactor free of regressions where timings on
a noisy machine cannot.

    python benchmarks/same_ops.py a5aa9bb

Each tree runs in a fresh process with its own package first on
``PYTHONPATH``, on ``regression.py``'s smoke sizes (which take the same
routes and pair layouts as its full sizes). Per case, after one warm-up
call: the multiset of (operator, input shapes) that ``torch.profiler``
records over a seeded forward and backward, and the results. Prints a
line per case and the operators that differ; exits 1 on any difference."""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from regression import CASES, setup
from versus import ROOT, checkout, short


def record(name: str):
    """``(ops, results)`` of one seeded forward and backward."""
    fwd, leaves = setup(name, smoke=True)
    for t in leaves:
        t.requires_grad_()
    for _ in range(2):  # the second call: one-time work done
        for t in leaves:
            t.grad = None
        torch.manual_seed(0)
        with torch.profiler.profile(record_shapes=True) as prof:
            out = fwd()
            out.square().sum().backward()
    ops = [f'{e.name} {e.input_shapes}' for e in prof.events()]
    return ops, [out.detach()] + [t.grad for t in leaves]


def child(out: Path):
    import torch_geometric_hgt
    tree = Path(os.environ['PYTHONPATH']).resolve()
    if tree not in Path(torch_geometric_hgt.__file__).resolve().parents:
        raise RuntimeError(f'imported {torch_geometric_hgt.__file__}, not '
                           f"{tree}'s package")
    torch.set_num_threads(2)
    ops, results = {}, {}
    for name in CASES:
        ops[name], results[name] = record(name)
    (out / 'ops.json').write_text(json.dumps(ops))
    torch.save(results, out / 'results.pt')


def run(tree: Path, out: Path):
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([sys.executable, __file__, '--child', str(out)],
                         cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'{tree} failed:\n{res.stderr[-3000:]}')
    return (json.loads((out / 'ops.json').read_text()),
            torch.load(out / 'results.pt'))


def compare(ops_o, res_o, ops_n, res_n):
    """``(lines, same)``: a line per case and per differing operator, and
    whether every case has the same operators and equal results."""
    lines, same = [], True
    for name in ops_o:
        a_, b_ = (collections.Counter(ops[name]) for ops in (ops_o, ops_n))
        equal = len(res_o[name]) == len(res_n[name]) and all(
            torch.equal(x, y) for x, y in zip(res_o[name], res_n[name]))
        lines.append(f'{name}: {sum(b_.values())} operator calls, '
                     f"{'the same' if a_ == b_ else 'DIFFERENT'} operators, "
                     f"{'bitwise equal' if equal else 'DIFFERENT'} results")
        lines += [f"   {'old' if a_[op] > b_[op] else 'new'} only: {n}x {op}"
                  for op, n in ((a_ - b_) + (b_ - a_)).most_common(20)]
        same &= a_ == b_ and equal
    return lines, same


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('base', nargs='?', help='the previous commit')
    p.add_argument('--child', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(Path(a.child))
    commit = short(a.base)
    with checkout(commit) as old, tempfile.TemporaryDirectory() as tmp:
        (ops_o, res_o), (ops_n, res_n) = (
            run(tree, Path(tmp) / side)
            for side, tree in (('old', old), ('new', ROOT)))
    print(f'old {commit}, new {short("HEAD")} plus the working tree:')
    lines, same = compare(ops_o, res_o, ops_n, res_n)
    print('\n'.join(lines))
    sys.exit(0 if same else 1)


if __name__ == '__main__':
    main()
