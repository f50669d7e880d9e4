#!/usr/bin/env bash
# The first GPU a session is lent: the CUDA tests, then one table of steps/s and peak memory.
#
#   bench/gpu_check.sh [bench_gpu.py options, e.g. --no-vgg or --steps 10]
#
# 1. pytest -m cuda: NCCL and SyncBatchNorm under torch.compile on 2 GPUs (skipped with one), identical
#    weights on every rank, bf16 and channels_last really active, resume exact on one GPU.
# 2. bench/bench_gpu.py: pix2pix facades 256 px and pix2pixHD 1024x512, fp32 vs bf16 vs
#    bf16 + channels_last + compile, 1 process and 2 where two GPUs exist.
# Sized to finish within 8 minutes on one GPU; stops at the first error (set -euo pipefail) with its output.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "bench/gpu_check.sh: no CUDA device here (the CPU path: $PYTHON bench/bench_gpu.py --device cpu --tiny)" >&2
    exit 2
fi
"$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])'
start=$SECONDS
"$PYTHON" -m pytest -m cuda -q -x -p no:cacheprovider tests
echo "CUDA tests: $((SECONDS - start)) s"
"$PYTHON" bench/bench_gpu.py "$@"
echo "gpu_check: $((SECONDS - start)) s in all"
