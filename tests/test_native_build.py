"""How the optional C kernels are built, cached, switched and left out,
and that results (dropout included) do not depend on whether they run."""
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from torch_geometric_hgt import DenseHGTConv, native
from torch_geometric_hgt.functional.update import dropout_keep, hashed_keep

needs_compiler = pytest.mark.skipif(native.build.compiler() is None,
                                    reason='needs a C compiler')


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty kernel cache, a library looked up anew, and the state
    restored after."""
    monkeypatch.setenv('TORCH_GEOMETRIC_HGT_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('TORCH_GEOMETRIC_HGT_NATIVE', raising=False)
    native.runtime.load_all.cache_clear()
    yield tmp_path
    native.runtime.load_all.cache_clear()


def script(path: Path, body: str) -> Path:
    """An executable shell script (a stand-in compiler)."""
    path.write_text('#!/bin/sh\n' + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_no_compiler_warns_once(fresh, monkeypatch):
    monkeypatch.setenv('CC', str(fresh / 'no-such-cc'))
    with pytest.warns(UserWarning, match='no C compiler'):
        assert native.library() is None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert native.library() is None and not native.is_available()


@needs_compiler
def test_unwritable_cache_falls_back_to_the_next_folder(fresh, monkeypatch):
    blocker = fresh / 'a-file'
    blocker.write_text('')
    monkeypatch.setenv('TORCH_GEOMETRIC_HGT_CACHE', str(blocker / 'cache'))
    monkeypatch.setenv('XDG_CACHE_HOME', str(fresh / 'xdg'))
    assert native.is_available()
    built = list((fresh / 'xdg' / 'torch_geometric_hgt').glob('*.so'))
    assert len(built) == len(native.build.REALS)


def test_no_writable_cache_warns_and_leaves_the_torch_code(fresh,
                                                           monkeypatch):
    blocker = fresh / 'a-file'
    blocker.write_text('')
    for var in ('TORCH_GEOMETRIC_HGT_CACHE', 'XDG_CACHE_HOME', 'HOME'):
        monkeypatch.setenv(var, str(blocker / var.lower()))
    monkeypatch.setattr('tempfile.tempdir', str(blocker / 'tmp'))
    with pytest.warns(UserWarning, match='no writable cache folder'):
        assert native.library() is None


@pytest.mark.parametrize('xdg', ['', 'relative/path'])
def test_cache_never_in_the_working_directory(monkeypatch, xdg):
    monkeypatch.setenv('XDG_CACHE_HOME', xdg)
    monkeypatch.delenv('TORCH_GEOMETRIC_HGT_CACHE', raising=False)
    assert all(p.is_absolute() for p in native.build.cache_dirs())


def test_cache_without_a_home(monkeypatch):
    def no_home():
        raise RuntimeError('Could not determine home directory.')
    monkeypatch.setattr(Path, 'home', staticmethod(no_home))
    monkeypatch.delenv('TORCH_GEOMETRIC_HGT_CACHE', raising=False)
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    dirs = list(native.build.cache_dirs())
    assert dirs and all(p.is_absolute() for p in dirs)


def test_compiler_timeout(fresh, monkeypatch):
    cc = script(fresh / 'slow-cc', 'sleep 30\n')
    monkeypatch.setenv('CC', str(cc))
    monkeypatch.setattr(native.build, 'COMPILER_TIMEOUT', 0.5)
    with pytest.warns(UserWarning, match='ran over'):
        assert native.library() is None


@needs_compiler
def test_failed_variant_is_remembered(fresh, monkeypatch):
    log = fresh / 'calls'
    real = native.build.compiler()
    cc = script(fresh / 'no-openmp-cc', f'''\
        echo "$@" >> {log}
        case " $* " in *" -fopenmp "*) echo "no OpenMP here" >&2; exit 1;;
        esac
        exec {real} "$@"
        ''')
    monkeypatch.setenv('CC', str(cc))
    assert native.is_available()  # built without OpenMP
    cache = fresh / 'cache'
    assert len(list(cache.glob('*.failed'))) == len(native.build.REALS) or \
        not native.openmp_runtimes()
    assert len(list(cache.glob('*.so'))) == len(native.build.REALS)
    log.write_text('')
    native.runtime.load_all.cache_clear()
    assert native.is_available()
    assert '-fopenmp' not in log.read_text()


@needs_compiler
def test_two_processes_build_at_once(tmp_path):
    env = {**os.environ, 'TORCH_GEOMETRIC_HGT_CACHE': str(tmp_path),
           'TORCH_GEOMETRIC_HGT_NATIVE': '1'}
    code = ('from torch_geometric_hgt import native; '
            'assert native.is_available()')
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    # one library per precision, no partial builds left behind
    assert sorted(p.suffix for p in tmp_path.iterdir()) == \
        ['.so'] * len(native.build.REALS)


@needs_compiler
@pytest.mark.usefixtures('fresh')
def test_kernels_bring_no_second_openmp_runtime():
    before = native.openmp_runtimes()
    assert native.is_available()
    assert native.openmp_runtimes() == before
    assert len(before) <= 1


@pytest.mark.usefixtures('fresh')
def test_enabled_switches_and_restores():
    was = native.is_available()
    with native.enabled(False):
        assert not native.is_available() and native.library() is None
    assert native.is_available() == was


@pytest.mark.parametrize('shape', [(1, ), (7, ), (64, 1, 33), (1000, 3)])
@pytest.mark.parametrize('p', [0.0, 0.1, 0.5, 1.0])
def test_dropout_masks_same_with_and_without_kernels(shape, p):
    masks = []
    for on in (True, False):
        with native.enabled(on):
            torch.manual_seed(11)
            masks.append(dropout_keep(shape, p, 'cpu'))
    assert torch.equal(*masks)


@needs_compiler
@pytest.mark.usefixtures('fresh')
def test_hashed_keep_matches_the_c_kernel():
    for seed in (0, 1, 2**62 + 12345, 2**63 - 2):
        for threshold in (0, 1, 2**31, 2**32 - 1, 2**32):
            want = native.dropout_mask((1001, ), seed, threshold)
            got = hashed_keep(1001, seed, threshold, torch.device('cpu'))
            assert torch.equal(got, want)


def test_seeded_training_step_same_with_and_without_kernels():
    T, R, N, B = 3, 2, 8, 5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, N, 16, generator=g)
    P = torch.randn(B, N, T, generator=g).softmax(-1)
    adj = torch.rand(B, N, N, generator=g)
    E = torch.randn(B, N, N, R, generator=g).softmax(-1)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, 5:] = False
    results = []
    for on in (True, False):
        torch.manual_seed(0)
        layer = DenseHGTConv(16, 16, T, R, 2, dropout=0.3).train()
        with native.enabled(on):
            torch.manual_seed(1)
            out = layer(x, P, adj, E, mask)
            out.square().sum().backward()
        results.append([out, *(p.grad for p in layer.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
