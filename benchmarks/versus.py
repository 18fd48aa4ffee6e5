"""A previous commit against the working tree, measured alternately (old,
new, old, new, ...) in one run on one machine, so that a slow phase of
the machine hits both alike.

    python benchmarks/versus.py bd96f81 benchmarks/sampling.py --rounds 3
    python benchmarks/versus.py bd96f81 benchmarks/sparse.py -- \
        --sizes 100000:1000000:5

Each round runs the script from a checkout of the commit (a temporary git
worktree) and from the working tree, each in a fresh process with its own
tree first on ``PYTHONPATH``, and reads the JSON the script writes to its
tree's ``benchmarks/out/``. With ``--script-from new`` both run the
working tree's script (one that uses only public APIs, such as
``regression.py``, which the old commit may not have), each against its
own tree's package. Prints, for every number both versions report,
the medians over the rounds and new / old.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def numbers(tree, prefix=''):
    """``{'a.b.c': value}`` for every number in a JSON tree; a list's
    entries are named by their text fields and sizes (a row's ``impl``,
    ``N``, ``E``, ...), else by position."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(numbers(value, f'{prefix}{key}.'))
        return out
    if isinstance(tree, list):
        out = {}
        for i, value in enumerate(tree):
            name = str(i)
            if isinstance(value, dict):
                ids = [str(v) for k, v in value.items()
                       if isinstance(v, str) or k in ('N', 'E', 'R', 'B')]
                name = ':'.join(ids) or name
            out.update(numbers(value, f'{prefix}{name}.'))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix[:-1]: float(tree)}
    return {}


def short(rev: str) -> str:
    return subprocess.run(['git', 'rev-parse', '--short', rev], cwd=ROOT,
                          capture_output=True, text=True,
                          check=True).stdout.strip()


@contextmanager
def checkout(commit: str):
    """A temporary git worktree of ``commit``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix='versus-') as tmp:
        tree = Path(tmp) / commit
        subprocess.run(['git', 'worktree', 'add', '--detach', str(tree),
                        commit], cwd=ROOT, check=True, capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(['git', 'worktree', 'remove', '--force',
                            str(tree)], cwd=ROOT, capture_output=True)


def run(tree: Path, script: str, args, out_name: str,
        script_tree: Path = None) -> dict:
    """The script's numbers, run from ``script_tree`` (default: ``tree``)
    with ``tree``'s package."""
    script_tree = script_tree or tree
    out = script_tree / 'benchmarks' / 'out' / f'{out_name}.json'
    out.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run([sys.executable, str(script_tree / script), *args],
                         cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'{script} failed in {tree}:\n'
                           f'{res.stderr[-3000:]}')
    return numbers(json.loads(out.read_text()))


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="arguments after '--' go to the script")
    p.add_argument('base', help='the previous commit')
    p.add_argument('script', help='benchmark script, relative to the root')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--json', default=None,
                   help='name of the JSON the script writes (default: the '
                        "script's name)")
    p.add_argument('--script-from', choices=('each', 'new'),
                   default='each',
                   help="run each tree's own script, or the working "
                        "tree's against both packages")
    p.add_argument('--keys', default='',
                   help='only numbers whose key contains one of these '
                        '(comma-separated)')
    argv = sys.argv[1:]
    cut = argv.index('--') if '--' in argv else len(argv)
    a = p.parse_args(argv[:cut])
    a.args = argv[cut + 1:]
    out_name = a.json or Path(a.script).stem
    keys = [k for k in a.keys.split(',') if k]
    commit, head = short(a.base), short('HEAD')
    with checkout(commit) as old:
        seen = {'old': [], 'new': []}
        for r in range(a.rounds):
            for side, tree in (('old', old), ('new', ROOT)):
                seen[side].append(run(
                    tree, a.script, a.args, out_name,
                    ROOT if a.script_from == 'new' else None))
                print(f'round {r + 1} {side} done', file=sys.stderr,
                      flush=True)
    common = sorted(set.intersection(*(set(d) for d in
                                       seen['old'] + seen['new'])))
    common = [k for k in common if not keys or any(s in k for s in keys)]
    print(f'`python benchmarks/versus.py {a.base} {a.script}'
          f"{' --script-from new' if a.script_from == 'new' else ''}"
          f"{' -- ' + ' '.join(a.args) if a.args else ''}` "
          f'(old {commit}, new {head} plus the working tree), '
          f'{a.rounds} alternating rounds, medians:')
    print('| number | old | new | new / old |')
    print('|---|---|---|---|')
    for k in common:
        o = statistics.median(d[k] for d in seen['old'])
        n = statistics.median(d[k] for d in seen['new'])
        ratio = f'{n / o:.2f}' if o else '-'
        print(f'| {k} | {o:.4g} | {n:.4g} | {ratio} |')


if __name__ == '__main__':
    main()
