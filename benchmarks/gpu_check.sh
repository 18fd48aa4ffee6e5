#!/usr/bin/env bash
# One prepared GPU run: the CUDA tests, then the five benchmarks on
# CUDA (equality first, as always). Results land in benchmarks/out/*_cuda.*
# (copied to OUTDIR as each finishes, if given); `python
# benchmarks/report.py` then adds the CUDA tables.
#
#     bash benchmarks/gpu_check.sh [OUTDIR]
set -uo pipefail
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi -L
$py -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, torch.cuda.get_device_name())"
$py -m pytest -q -p no:cacheprovider -k cuda tests 2>&1 | tail -25
for b in sparse dense legacy; do
    echo "== $b"
    $py benchmarks/$b.py --device cuda --threads 8 2>&1 | tr '\r' '\n' \
        | grep -v 'it/s\]\|s/it\]' | tail -6
    if [ $# -ge 1 ]; then cp benchmarks/out/"$b"_cuda.* "$1"/; fi
done
echo "== pyg_dropin (10% of ogbn-mag)"
$py benchmarks/pyg_dropin.py --device cuda --scale 0.1 --repeat 10 2>&1 | tail -6
if [ $# -ge 1 ]; then cp benchmarks/out/pyg_dropin_cuda.json "$1"/; fi
echo "== sampling (1M nodes / 10M edges, graph and sampler on the GPU)"
$py benchmarks/sampling.py --device cuda --reference-batches 0 2>&1 | tail -5
if [ $# -ge 1 ]; then cp benchmarks/out/sampling_cuda.json "$1"/; fi
