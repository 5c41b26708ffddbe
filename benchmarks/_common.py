"""Shared helpers for the benchmark scripts: environment record, timing, JSON lines, tables."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import time

# One BLAS/OpenMP thread per library, set before numpy (and through it OpenBLAS) is imported:
# set later, OpenBLAS has already started a thread per core and fights the pinned thread for it
# (measured: POT's Sinkhorn at n = 1,024 went from ~50 ms to 545 ms).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

# FLOWJAX_FM_BENCH_RESULTS redirects every suite's output (the smoke tests write to a temp dir).
RESULTS = pathlib.Path(
    os.environ.get("FLOWJAX_FM_BENCH_RESULTS") or pathlib.Path(__file__).resolve().parent / "results"
)


def pin_threads(core: int) -> str:
    """Confine every thread of this process (not just the caller) to ``core``.

    ``os.sched_setaffinity(0, ...)`` acts on the calling thread only on Linux: XLA's worker
    threads, started when JAX initialised, would keep every core, and a JAX run would then use
    two cores against a peer's one (measured: 0.79 s of CPU in 0.41 s of wall time). Threads
    started later inherit the affinity of the thread that starts them.
    """
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), {core})
            except OSError:  # a thread that ended meanwhile
                pass
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return "one thread (no core pinning on this OS)"
    return f"every thread pinned to core {core}"


def pin_every_thread() -> str:
    """Confine every thread (including ones started since the last pinning) to the main thread's core."""
    try:
        return pin_threads(sorted(os.sched_getaffinity(0))[0])
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return "one thread (no core pinning on this OS)"


def pin_one_core() -> str:
    """Pin this process to one core and one thread per library; return a description."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    try:
        # Start JAX's runtime before narrowing the affinity: an XLA CPU client created while the
        # process may use only one core sizes its thread pools to one thread, and a host callback
        # (the exact-OT solver) can then wait forever for a thread.
        import jax

        jax.devices()
        return pin_threads(sorted(os.sched_getaffinity(0))[0])
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


def timed(fn, repeats: int, warmup: int = 1):
    """``(last output, (median wall s, min wall s, median process-CPU s))`` of ``fn()``, which blocks.

    CPU time counts every thread of this process, so it is the fairer figure on a shared machine.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return out, (float(np.median(wall)), float(np.min(wall)), float(np.median(cpu)))


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


def limit_fields(flops_per_call: float | None, seconds_per_call: float, peak_flops: float) -> dict:
    """How close a timed call runs to the machine's limit, as JSON fields.

    ``achieved_gflops`` = XLA's FLOP count of one call / its median time; ``peak_gflops`` = the
    large matrix product of :func:`matmul_peak_flops` measured in the same run; ``of_peak`` their
    ratio. ``None`` fields when the backend gives no FLOP count.
    """
    if not flops_per_call or seconds_per_call <= 0:
        return {"achieved_gflops": None, "peak_gflops": peak_flops / 1e9, "of_peak": None}
    achieved = flops_per_call / seconds_per_call
    return {"achieved_gflops": achieved / 1e9, "peak_gflops": peak_flops / 1e9, "of_peak": achieved / peak_flops}


def fmt_limit(row: dict) -> str:
    """``"12.3 (41.2%)"``: a row's achieved GFLOP/s and its share of the measured matmul peak."""
    if row.get("achieved_gflops") is None:
        return "-"
    return f"{row['achieved_gflops']:.2f} ({100 * row['of_peak']:.1f}%)"


def write_plot(name: str, rows: list[dict], x: str, y: str, series: list[str], *, title: str,
               xlabel: str | None = None, ylabel: str | None = None, logx: bool = True,
               logy: bool = True, panels: str | None = None) -> pathlib.Path | None:
    """A line plot of ``y`` against ``x``, one line per distinct value of the ``series`` keys.

    ``panels``: a key whose values get one subplot each (e.g. the dimension). Rows missing ``x``
    or ``y`` (a peer that did not run) are left out. Writes ``RESULTS/NAME.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not rows:
        return None
    def _order(v):  # numbers by value (64 before 3072), anything else as text after them
        try:
            return (0, float(str(v).strip()), "")
        except ValueError:
            return (1, 0.0, str(v))

    panel_values = sorted({r[panels] for r in rows}, key=_order) if panels else [None]
    fig, axes = plt.subplots(1, len(panel_values), figsize=(4.8 * len(panel_values), 3.8), squeeze=False)
    for ax, pv in zip(axes[0], panel_values, strict=True):
        sub = [r for r in rows if panels is None or r[panels] == pv]
        groups: dict[tuple, list[dict]] = {}
        for r in sub:
            groups.setdefault(tuple(r.get(k) for k in series), []).append(r)
        for label, grp in sorted(groups.items(), key=lambda kv: str(kv[0])):
            grp = sorted(grp, key=lambda r: r[x])
            ax.plot([r[x] for r in grp], [r[y] for r in grp], marker="o",
                    label=" ".join(str(v) for v in label if v is not None))
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabel or y)
        ax.set_title(title if pv is None else f"{title}, {panels} = {pv}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
