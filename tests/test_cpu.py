"""keep_freed_memory: large temporaries stop paying page faults."""
import subprocess
import sys

import pytest

SCRIPT = '''
import resource, sys, torch
from torch_geometric_hgt.cpu import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == '1' else False
torch.ones(2**24).sum()  # 64 MB: above glibc's 32 MB mmap ceiling
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(2**24).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def page_faults(tuned: bool):
    out = subprocess.run([sys.executable, '-c', SCRIPT, str(int(tuned))],
                         capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == 'True', int(faults)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='glibc malloc')
def test_keep_freed_memory_avoids_page_faults():
    _, default = page_faults(False)
    applied, tuned = page_faults(True)
    if not applied:
        pytest.skip('C library is not glibc')
    pages = 2**24 * 4 // 4096
    assert default > 5 * pages  # every 64 MB temporary faults afresh
    assert tuned < 2 * pages    # reused after the first
