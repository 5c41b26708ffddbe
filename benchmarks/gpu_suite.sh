#!/usr/bin/env bash
# The benchmark suites on an accelerator host (the device machine: python3 with jax[cuda], flax,
# optax, diffrax, orbax; no POT/torchcfm). Builds the C solver in place, runs the suites, and
# copies the new JSON lines and tables to $OUT (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 setup.py -q build_ext --inplace 2>&1 | tail -2
python3 -c "import jax; print(jax.devices())"
for s in train scaling assignment; do
  f=benchmarks/results/$s.jsonl; [ -f "$f" ] && wc -l < "$f" > "/tmp/$s.n" || echo 0 > "/tmp/$s.n"
done
timeout 200 python3 benchmarks/bench_train.py --batch 256 4096
timeout 100 python3 benchmarks/bench_scaling.py --quick
timeout 100 python3 benchmarks/bench_assignment.py --quick
for s in train scaling assignment; do
  f=benchmarks/results/$s.jsonl
  [ -f "$f" ] && tail -n +$(( $(cat /tmp/$s.n) + 1 )) "$f" > "$OUT/${s}_gpu.jsonl"
  [ -f "benchmarks/results/$s.md" ] && cp "benchmarks/results/$s.md" "$OUT/${s}_gpu.md"
done
ls -la "$OUT"
