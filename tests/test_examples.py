"""Every example, benchmark and the notebook run from a clean checkout
(reduced --smoke sizes)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600, **kwargs):
    res = subprocess.run([sys.executable, *args], cwd=ROOT, timeout=timeout,
                         capture_output=True, text=True, **kwargs)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res.stdout


def test_family_population(tmp_path):
    out = run('examples/family_population.py', '--smoke', '--out',
              str(tmp_path))
    assert 'critic held-out accuracy' in out
    assert (tmp_path / 'family_training.png').stat().st_size > 1000
    # the dense and sparse layers agree on the generated households
    diff = float(out.split('max abs diff ')[1].split()[0])
    assert diff < 1e-4


def _final_params(tmp_path, nproc):
    path = tmp_path / f'params{nproc}.pt'
    script = 'examples/ddp_train.py'
    if nproc == 1:
        run(script, '--smoke', '--save', str(path))
    else:
        run('-m', 'torch.distributed.run', '--standalone',
            f'--nproc_per_node={nproc}', script, '--smoke', '--save',
            str(path), env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return torch.load(path)


@pytest.mark.slow  # starts three processes
def test_ddp_two_processes_equal_single_process(tmp_path):
    single = _final_params(tmp_path, 1)
    double = _final_params(tmp_path, 2)
    # same global batches, gradients averaged: the same updates
    assert torch.allclose(single, double, atol=1e-5)


@pytest.mark.slow  # starts three processes
def test_ddp_minibatch_two_ranks_equal_one_process(tmp_path):
    script = 'examples/ddp_minibatch.py'
    one, two = tmp_path / 'one.pt', tmp_path / 'two.pt'
    run(script, '--smoke', '--world', '2', '--save', str(one))
    run('-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
        script, '--smoke', '--save', str(two),
        env={**os.environ, 'OMP_NUM_THREADS': '1'})
    # each rank sampled its own shard; DDP averaged the gradients: the
    # same updates as one process averaging the same batches' losses
    assert torch.allclose(torch.load(one), torch.load(two), atol=1e-5)


@pytest.mark.parametrize('loader', ['hgt', 'neighbor'])
def test_mag_minibatch(loader):
    out = run('examples/mag_minibatch.py', '--smoke', '--loader', loader)
    assert f'{loader} loader: sampling' in out
    acc = float(out.split('test accuracy ')[1].split()[0])
    # well above chance (1/16) after two epochs
    assert acc > 0.3


NEEDS_RECBOLE = pytest.mark.skipif(
    importlib.util.find_spec('recbole') is None,
    reason="needs 'pip install --no-deps recbole'")


@NEEDS_RECBOLE
def test_movielens():
    out = run('examples/movielens_kg.py', '--smoke')
    assert 'ours (UltraFastHGTConv): test RMSE' in out
    assert 'PyG HGTConv: test RMSE' in out


@NEEDS_RECBOLE
def test_movielens_link():
    out = run('examples/movielens_link.py', '--smoke')
    # seeded: a second run repeats the losses and metrics (not the times)
    again = run('examples/movielens_link.py', '--smoke')
    assert [line.split('; per batch')[0] for line in out.splitlines()] == \
        [line.split('; per batch')[0] for line in again.splitlines()]
    first = out.split('first batch: loss ')[1].split()
    ours, pyg = float(first[0]), float(first[3])
    assert abs(ours - pyg) < 1e-6
    auc = float(out.split('AUC val ')[1].split()[0])
    # one epoch on 3,200 ratings: well above chance (0.5)
    assert auc > 0.6
    assert 'Recall@20' in out and 'sampling' in out


@pytest.mark.slow  # starts three processes
def test_disk_graph_two_ranks_equal_one_process(tmp_path):
    """The stores on disk sampled by two DDP ranks train to the same
    parameters as one process averaging both ranks' batches."""
    script = 'examples/disk_graph.py'
    one, two = tmp_path / 'one.pt', tmp_path / 'two.pt'
    root = str(tmp_path / 'data')
    out = run(script, '--smoke', '--world', '2', '--root', root, '--save',
              str(one))
    assert 'MB on disk' in out
    run('-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
        script, '--smoke', '--root', root, '--save', str(two),
        env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert torch.allclose(torch.load(one), torch.load(two), atol=1e-5)


HAS_IMDB = all(importlib.util.find_spec(m) is not None
               for m in ('graphdatascience', 'pandas', 'pyarrow'))
NEEDS_IMDB = pytest.mark.skipif(
    not HAS_IMDB, reason="needs 'pip install --no-deps graphdatascience' "
    "and pandas, pyarrow")


@NEEDS_IMDB
def test_imdb_pyg_dropin(tmp_path):
    out = run('examples/imdb_pyg_dropin.py', '--smoke', '--out',
              str(tmp_path))
    rows = [line for line in out.splitlines() if line.startswith('| ')]
    pyg, ours = (row.split(' | ') for row in rows[-2:])
    assert pyg[0] == '| PyG HGTConv' and ours[0].startswith('| ours')
    # same initial weights, same data: the same loss, accuracy and F1
    assert pyg[2:] == ours[2:]
    gap = float(out.split('max loss difference over the epochs: ')[1]
                .split()[0])
    assert gap < 1e-4
    assert (tmp_path / 'imdb_loss.png').stat().st_size > 1000


@NEEDS_IMDB
def test_imdb_explain(tmp_path):
    out = run('examples/imdb_explain.py', '--smoke', '--out', str(tmp_path))
    # masks reached our layer: some edge of the movie's neighbourhood is
    # weighted; PyG's own layer cannot be explained
    weights = [float(line.split()[0]) for line in out.splitlines()
               if line.startswith('    ') and '->' in line]
    assert weights and max(weights) > 0
    assert "PyG's HGTConv: Could not compute gradients" in out
    assert (tmp_path / 'imdb_explain.png').stat().st_size > 1000


@pytest.mark.slow  # a Jupyter kernel each
@pytest.mark.parametrize('name', [
    'quickstart', pytest.param('imdb_pyg_dropin', marks=NEEDS_IMDB),
    pytest.param('movielens_link', marks=NEEDS_RECBOLE)])
def test_notebook_executes(name):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    nb = nbformat.read(ROOT / f'examples/notebooks/{name}.ipynb',
                       as_version=4)
    assert all(not c.get('outputs') for c in nb.cells
               if c.cell_type == 'code'), 'stored with outputs'
    nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                            resources={'metadata': {'path': str(ROOT)}}
                            ).execute()


# the benchmark smokes are slow tests, as the others below
@pytest.mark.slow
def test_pyg_dropin_benchmark_smoke():
    out = run('benchmarks/pyg_dropin.py', '--smoke')
    assert '| default |' in out and '| keep_freed_memory() |' in out
    diff = float(out.split('max abs difference of the outputs ')[1]
                 .split()[0])
    assert diff < 1e-5


@pytest.mark.slow
def test_sampling_benchmark_smoke():
    out = run('benchmarks/sampling.py', '--smoke')
    rows = [line for line in out.splitlines()
            if line.startswith(('| neighbor |', '| hgt |', '| link |',
                                '| link_hgt |'))]
    assert len(rows) == 4


def test_same_ops_compare_reports_differences():
    spec = importlib.util.spec_from_file_location(
        'same_ops', ROOT / 'benchmarks' / 'same_ops.py')
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    try:
        same_ops = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(same_ops)
    finally:
        sys.path.remove(str(ROOT / 'benchmarks'))
    ops = {'a': ['mm [[2, 2]]', 'add [[2]]'], 'b': ['mm [[2, 2]]']}
    res = {'a': [torch.ones(2)], 'b': [torch.zeros(2)]}
    lines, same = same_ops.compare(ops, res, ops, res)
    assert same and lines == [
        'a: 2 operator calls, the same operators, bitwise equal results',
        'b: 1 operator calls, the same operators, bitwise equal results']
    # one more call of an operator, and a result one ulp off
    ops2 = {'a': ops['a'] + ['add [[2]]'], 'b': ops['b']}
    res2 = {'a': res['a'], 'b': [torch.nextafter(torch.zeros(2),
                                                 torch.ones(2))]}
    lines, same = same_ops.compare(ops, res, ops2, res2)
    assert not same and lines == [
        'a: 3 operator calls, DIFFERENT operators, bitwise equal results',
        '   new only: 1x add [[2]]',
        'b: 1 operator calls, the same operators, DIFFERENT results']


@pytest.mark.slow
def test_same_ops_against_head():
    # the working tree against its own commit: with the package as
    # committed, every layer's operators and results must match
    if subprocess.run(['git', 'diff', '--quiet', 'HEAD', '--',
                       'torch_geometric_hgt'], cwd=ROOT).returncode:
        pytest.skip('the package differs from HEAD')
    out = run('benchmarks/same_ops.py', 'HEAD')
    lines = out.splitlines()[1:]
    assert len(lines) == 4 and all(
        line.endswith('the same operators, bitwise equal results')
        for line in lines), out


# each starts a process per configuration (minutes in all)
@pytest.mark.slow
@pytest.mark.parametrize('script', ['legacy', 'dense', 'sparse'])
def test_benchmark_smoke(script):
    out = run(f'benchmarks/{script}.py', '--smoke', '--threads', '1')
    # the script exits non-zero (run() fails) when its equality check
    # fails; the reported differences are small too
    start = 0 if out.startswith('{') else out.index('\n{') + 1
    result = json.loads(out[start:])
    diffs = result.get('equality_max_abs_diff_vs_loop',
                       result.get('equality'))
    values = list(_numbers(diffs))
    assert values and max(values) < 1e-4
    assert result['device']


def _numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, (int, float)):
        yield float(tree)
