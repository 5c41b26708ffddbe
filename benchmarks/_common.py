"""Shared helpers for the benchmark scripts: environment record, timing, JSON lines, tables."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import time

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def pin_one_core() -> str:
    """Pin this process to one core and one thread per library; return a description."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = (
            flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    try:
        # Start JAX's runtime before narrowing the affinity: an XLA CPU client created while the
        # process may use only one core sizes its thread pools to one thread, and a host callback
        # (the exact-OT solver) can then wait forever for a thread.
        import jax

        jax.devices()
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]})
        return f"one thread pinned to core {cores[0]}"
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return "one thread (no core pinning on this OS)"


def environment() -> dict:
    """Device kind and library versions, recorded with every JSON line."""
    import jax

    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for mod in ("flax", "optax", "diffrax", "ott", "torch", "torchcfm", "ot", "torchdiffeq"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing peer is recorded as missing
            versions[mod] = None
    dev = jax.devices()[0]
    return {
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "device_count": jax.device_count(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def median_time(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def write_jsonl(name: str, rows: list[dict]) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    return path


def write_table(name: str, title: str, preamble: str, header: list[str], rows: list[list]) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    lines = [f"# {title}", "", preamble, "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large float32 matrix product on the default device: the machine's practical limit."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    med, _ = median_time(lambda: f(a).block_until_ready(), repeats)
    return 2.0 * n**3 / med


def compiled_flops(fn, *args) -> float | None:
    """XLA's FLOP count for one call of ``jax.jit(fn)(*args)`` (None when not reported)."""
    import jax

    try:
        analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - cost analysis is best effort on some backends
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None
