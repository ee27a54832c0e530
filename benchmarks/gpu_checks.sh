#!/usr/bin/env bash
# Issue #19's GPU checks in one command, for a lent GPU machine (the device tool's `run`).
# That machine has torch but neither Pyro nor mlxtend, and reaches no package index, so
# they travel as wheels. Once, here, in the repository's root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       pyro-ppl==1.9.2 pyro-api==0.1.2 mlxtend==0.25.0
#
# then run `bash benchmarks/gpu_checks.sh` there with carry [".whl"] and timeout_s 600.
# It takes about 7 minutes at the defaults (AIS gets --ais-budget 240 s; the pilot
# projects the rest); gpu_checks.json and gpu_checks.md come back in $OUT. Arguments
# go to benchmarks/gpu_checks.py (its docstring says what it measures).
set -euo pipefail
cd "$(dirname "$0")/.."
site="${GPU_CHECKS_SITE:-/tmp/site}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_checks.py --out "${OUT:-gpu-checks}" "$@"
