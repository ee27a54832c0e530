#!/usr/bin/env bash
# The command line on a GPU, end to end, for a lent GPU machine (the device tool's `run`):
# train on cuda (compiled evaluation, AIS and figures included), resume there,
# re-evaluate by importance sampling, by AIS and by AIS --auto, and once through
# torchrun (--nproc 1: NCCL); then pack the run directory into $OUT, so that it can be
# read back on a CPU (`vi-vae evaluate gpu-cli-run --device cpu`, same points and seed).
# Each step prints its exit status; the script goes on past a failed one.
#
# The machine lacks Pyro, mlxtend and arviz: they travel as wheels in .whl (see
# gpu_checks.sh's header; also arviz==0.23.4 xarray-einstats==0.9.1 h5netcdf==1.8.3
# platformdirs). Run `bash benchmarks/gpu_cli.sh` with carry [".whl"]; about 2 minutes.
# DEVICE=cpu EPOCHS=1 checks the script on a machine without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
site="${GPU_CHECKS_SITE:-/tmp/site}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl || exit 1
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
device="${DEVICE:-cuda}" epochs="${EPOCHS:-3}" out="${OUT:-gpu-cli}"
run="${TMPDIR:-/tmp}/gpu-cli-run"
mkdir -p "$out" && rm -rf "$run"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true

step() {
    echo "=== vi-vae $*"
    local started=$SECONDS
    python3 -m vi_vae "$@"
    echo "=== exit $? after $((SECONDS - started)) s: vi-vae $1"
}

step train --epochs "$epochs" --device "$device" --run-dir "$run" --eval-compile \
    --eval-num-particles 1000 --eval-num-points 2000 --ais-num-points 20 --ais-num-steps 200
step train --resume "$run" --epochs "$((epochs + 1))" --device "$device"
step evaluate "$run" --device "$device" --num-particles 5000
step evaluate "$run" --device "$device" --method ais --num-points 50 --compile
step evaluate "$run" --device "$device" --method ais --auto --num-points 10
step evaluate "$run" --device "$device" --nproc 1 --num-particles 5000
tar -czf "$out/gpu-cli-run.tar.gz" -C "$(dirname "$run")" "$(basename "$run")"
echo "=== packed $out/gpu-cli-run.tar.gz"
