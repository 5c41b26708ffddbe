#!/usr/bin/env bash
# The benchmark suites on an accelerator host (python3 with jax[cuda], flax, optax, diffrax, ott,
# orbax; no torch/torchcfm/POT there, so every suite runs ours alone and says so).
# Builds the C solver in place and writes every suite's JSON lines, tables and plots to
# $OUT/gpu (FLOWJAX_FM_BENCH_RESULTS), never into benchmarks/results. Each suite has its own
# time limit so one slow suite cannot eat the others' time; the order is most-wanted first.
#   OUT=/tmp/gpu bash benchmarks/gpu_suite.sh
set -uo pipefail
OUT=${OUT:-gpu_out}
export FLOWJAX_FM_BENCH_RESULTS="$OUT/gpu" PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p "$FLOWJAX_FM_BENCH_RESULTS"
python3 setup.py -q build_ext --inplace 2>&1 | tail -2
python3 -c "import jax; print(jax.__version__, jax.devices())"
run() {  # run LIMIT_S SCRIPT ARGS...
  local limit=$1; shift
  local t0=$SECONDS
  echo "=== $* (limit ${limit}s)"
  timeout "$limit" python3 "$@" > "$FLOWJAX_FM_BENCH_RESULTS/$(basename "$1" .py).log" 2>&1
  echo "    exit $? after $((SECONDS - t0)) s"
}
# issue 13 first: OT-CFM with the pairing ahead of the step vs in it, against I-CFM (CLI), and the
# pure-JAX auction against the host solver on the device
run 240 benchmarks/bench_pairing.py --batch 256 1024 --repeats 1
run 240 benchmarks/bench_auction.py --sizes 256 1024 4096 --batch 64x64
run 150 benchmarks/bench_train.py --batch 256 1024 --repeats 3 --budget 0.2
run 70 benchmarks/bench_sampling.py
run 70 benchmarks/bench_likelihood.py --no-torch
run 80 benchmarks/bench_sinkhorn.py --sizes 256 1024 4096 8192 --dims 2 64 3072
run 60 benchmarks/bench_scaling.py --quick
run 60 benchmarks/bench_paper2d.py --libs ours --seeds 42 --steps 2000 --tasks "N(0,I)->moons" "N(0,I)->8gaussians"
ls -la "$FLOWJAX_FM_BENCH_RESULTS"
