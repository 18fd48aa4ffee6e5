"""Building the C kernels (:mod:`torch_geometric_hgt.native`), one library
per real type: for the CPU the compiler reports as ``-march=native``,
cached under a key that holds what that target defines (a shared cache
never hands one machine another's instructions); with OpenMP only against
the runtime torch has loaded; a failed build is remembered in the cache,
and the compiler runs under a timeout."""
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch

from torch_geometric_hgt.numerics import EXP_CAP

_SOURCES = [Path(__file__).parents[1] / 'csrc' / f for f in
            ('kernels.h', 'soft_update.c', 'attention.c')]
#: reassociation lets the compiler vectorize the sums; no finite-math, so
#: NaN and inf propagate as in torch
_FLAGS = ['-O3', '-fPIC', '-fno-math-errno', '-fno-trapping-math',
          '-fno-signed-zeros', '-fassociative-math', '-ffp-contract=fast']
#: seconds one compiler call may take
COMPILER_TIMEOUT = 300.0


def compiler() -> Optional[str]:
    cc = os.environ.get('CC') or (sysconfig.get_config_var('CC') or 'cc')
    return shutil.which(cc.split()[0])


def run_compiler(args: List[str]) -> subprocess.CompletedProcess:
    """``args`` under :data:`COMPILER_TIMEOUT`; a timeout reads as a
    failed run."""
    try:
        return subprocess.run(args, capture_output=True, text=True,
                              timeout=COMPILER_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(
            args, 1, '', f'{args[0]} ran over {COMPILER_TIMEOUT:.0f} s')


@functools.lru_cache(maxsize=None)
def _target(cc: str) -> Tuple[List[str], str]:
    """``(flags, key)``: ``-march=native`` and the macros the compiler
    defines for it (what the built code may use), or no target flag and
    ``'portable'`` where the compiler has no ``-march=native``."""
    run = run_compiler([cc, '-march=native', '-E', '-dM', '-x', 'c',
                         os.devnull])
    if run.returncode != 0:
        return [], 'portable'
    return ['-march=native'], '\n'.join(sorted(run.stdout.splitlines()))


def openmp_runtimes() -> List[str]:
    """Paths of the OpenMP runtimes mapped into this process (torch's,
    normally; read from ``/proc/self/maps``, so empty where there is
    none)."""
    try:
        with open('/proc/self/maps') as f:
            paths = {line.split()[-1] for line in f if '/' in line}
    except OSError:
        return []
    return sorted(p for p in paths
                  if re.match(r'lib(g|i|i5|)omp[-.\w]*\.so', Path(p).name))


def cache_dirs() -> Iterator[Path]:
    """Where the kernels may be built, best first:
    ``TORCH_GEOMETRIC_HGT_CACHE``, ``$XDG_CACHE_HOME`` (if set and not
    empty), ``~/.cache`` (if there is a home), a per-user folder in the
    temporary directory."""
    explicit = os.environ.get('TORCH_GEOMETRIC_HGT_CACHE')
    if explicit:
        yield Path(explicit)
    xdg = os.environ.get('XDG_CACHE_HOME')
    if xdg and Path(xdg).is_absolute():
        yield Path(xdg) / 'torch_geometric_hgt'
    try:
        yield Path.home() / '.cache' / 'torch_geometric_hgt'
    except RuntimeError:  # no HOME and no password entry
        pass
    uid = os.getuid() if hasattr(os, 'getuid') else 'user'
    yield Path(tempfile.gettempdir()) / f'torch_geometric_hgt-{uid}'


def writable_cache() -> Path:
    errors = []
    for path in cache_dirs():
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                return path
        except OSError as e:
            errors.append(f'{path}: {e}')
    raise OSError('no writable cache folder: ' + '; '.join(errors))


REALS = {torch.float32: ('float', ctypes.c_float),
          torch.float64: ('double', ctypes.c_double)}


def build_library(cc: str, real: str) -> Path:
    """The library for ``real``: with OpenMP against torch's runtime where
    the compiler can, else without. A variant that failed is skipped
    (its error is kept beside the library's name)."""
    march, target = _target(cc)
    runtimes = openmp_runtimes()
    variants = [(['-fopenmp'], runtimes[:1])] if len(runtimes) == 1 else []
    variants.append(([], []))
    cache = writable_cache()
    errors = []
    for openmp, link in variants:
        flags = [*_FLAGS, *march, *openmp, f'-Dreal={real}',
                 f'-DREAL_BYTES={4 if real == "float" else 8}',
                 f'-DEXP_CAP={EXP_CAP:g}']
        key = hashlib.sha256('\0'.join(
            [*(f.read_text() for f in _SOURCES), cc, target, *flags,
             *link]).encode()).hexdigest()[:16]
        target_so = cache / f'dense_kernels_{key}.so'
        failed = target_so.with_suffix('.failed')
        if target_so.exists():
            return target_so
        if failed.exists():
            errors.append(failed.read_text())
            continue
        # build aside and rename: racing processes see a whole file or none
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            so = Path(tmp) / target_so.name
            objs = [str(Path(tmp) / f'{src.stem}.o') for src in _SOURCES[1:]]
            runs = [run_compiler([cc, *flags, '-c', str(src), '-o', obj])
                    for src, obj in zip(_SOURCES[1:], objs)]
            if all(r.returncode == 0 for r in runs):
                # link the runtime torch has loaded by its path, not -lgomp
                runs.append(run_compiler([cc, '-shared', '-o', str(so),
                                           *objs, *link, '-lm']))
            if all(r.returncode == 0 for r in runs):
                os.replace(so, target_so)
                return target_so
            error = next(r.stderr.strip() for r in runs if r.returncode)
            errors.append(error)
            failed.write_text(error)
    raise OSError('\n'.join(errors))
