#!/usr/bin/env bash
# The GPU checks behind docs/benchmarks.md, in one command on a machine with one NVIDIA GPU,
# Keras, JAX and a CUDA build of PyTorch: the host-sync audit, the three benchmarks on JAX and
# PyTorch, then both backend test suites. Every step has a time limit (seconds, the first
# argument of `step`), so a slow step cannot eat the others' time; logs go to $OUT
# (default gpu-results/), one per step, and the suites print each test's result as it ends, so
# a run cut short still names its failures.
#
#     bash benchmarks/gpu_check.sh            # about 12 minutes on an H200
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # two suites share the GPU below
start=$(date +%s)

step() {  # step LIMIT LOG VAR=value ... command ...
  local limit=$1 log=$2
  shift 2
  echo "### [$(( $(date +%s) - start ))s] $*" | tee "$OUT/$log"
  timeout "$limit" env "$@" >>"$OUT/$log" 2>&1
  echo "### exit $?" >>"$OUT/$log"
  grep -v "Warning\|warn\|^\s*$" "$OUT/$log" | tail -n 25
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/versions"
KERAS_BACKEND=jax python3 -c "import sys, keras, jax, torch; print('python', sys.version.split()[0],
  '| keras', keras.__version__, '| jax', jax.__version__, '| torch', torch.__version__)" \
  | tee -a "$OUT/versions"

step 60 syncs.log KERAS_BACKEND=torch python3 benchmarks/host_syncs.py --steps 10
for spe in 1 10; do
  step 90 gan_jax_$spe.log KERAS_BACKEND=jax python3 benchmarks/gan_step.py --steps 200 \
    --repeats 5 --steps-per-execution $spe
done
step 90 gan_torch.log KERAS_BACKEND=torch python3 benchmarks/gan_step.py --steps 100 --repeats 5
for data in device numpy; do
  step 80 all_jax_$data.log KERAS_BACKEND=jax python3 benchmarks/all_step.py --steps 200 \
    --repeats 5 --data $data
done
step 90 all_torch.log KERAS_BACKEND=torch python3 benchmarks/all_step.py --steps 50 --repeats 5
step 60 guard_jax.log KERAS_BACKEND=jax python3 benchmarks/divergence_guard.py --steps 300 \
  --repeats 7
step 70 guard_torch.log KERAS_BACKEND=torch python3 benchmarks/divergence_guard.py --steps 100 \
  --repeats 5

suite() {  # suite BACKEND WORKERS: every test's PASSED/FAILED line as it ends, then the summary
  (cd tests/backend && step 300 "suite_$1.log" ALLLIB_BACKEND_SUITE=1 KERAS_BACKEND=$1 \
    python3 -m pytest -v -rfE --tb=short -p no:cacheprovider -o addopts= -W ignore -n "$2")
}
suite torch 6 >/dev/null &
suite jax 9 >/dev/null
wait
for b in jax torch; do
  echo "suite $b: $(grep -c ' PASSED' "$OUT/suite_$b.log") passed," \
    "$(grep -c ' SKIPPED' "$OUT/suite_$b.log") skipped, $(grep -c ' FAILED' "$OUT/suite_$b.log")" \
    "failed; last line: $(tail -n 1 "$OUT/suite_$b.log")"
  grep " FAILED" "$OUT/suite_$b.log" | sort -u
done
echo "### total $(( $(date +%s) - start ))s"
