"""The one benchmark harness: environment record, thread pinning, timers, JSON lines, tables,
plots, and the suite runner.

A suite module declares its cases and its table as a :class:`Suite` and ends with
``if __name__ == "__main__": h.main(SUITE)``. :func:`main` parses the common flags (``--quick``,
``--out``, ``--repeats``, ``--core``, ``--render``) and the suite's own, pins the threads before
JAX starts its runtime (each suite runs in its own process: ``python -m benchmarks.bench_NAME``
or ``python -m benchmarks --suite NAME``), records the environment and the machine's matmul
limit, runs the cases, appends their rows to ``RESULTS/NAME.jsonl`` and rewrites ``NAME.md`` and
the suite's plots. ``RESULTS`` is ``--out``, else ``$FLOWJAX_FM_BENCH_RESULTS``, else
``benchmarks/results``.

Timing: :func:`time_fn` (the first call, compilation included, reported apart from the median of
the repeats; every call ends in ``block_until_ready``) and :func:`time_interleaved` (several
calls taking turns, so that a busy neighbour slows all alike: ours against a peer in the same
process). :func:`fit_timed` times ``fm.training.fit`` chunk by chunk (compile apart, steady rate).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
ENV_KEYS = ("device_kind", "platform", "device_count", "machine", "cpu_count", "load_avg_1m",
            "versions", "time")
NO_PINNING = "one thread (no core pinning on this OS)"


def results_dir(out: str | os.PathLike | None = None) -> pathlib.Path:
    """Where the suites write: ``out``, else ``$FLOWJAX_FM_BENCH_RESULTS``, else ``benchmarks/results``."""
    return pathlib.Path(out or os.environ.get("FLOWJAX_FM_BENCH_RESULTS") or HERE / "results")


# -- environment and threads -----------------------------------------------------------------


DISTRIBUTIONS = {"flax": "flax", "optax": "optax", "diffrax": "diffrax", "ott": "ott-jax", "torch": "torch",
                 "torchcfm": "torchcfm", "ot": "POT", "torchdiffeq": "torchdiffeq",
                 "torchsde": "torchsde"}


@functools.cache
def versions() -> dict:
    """Python, JAX, the libraries ours builds on and the peers (``None`` where missing).

    Read from the installed distributions' metadata: importing torch only to read its version
    would load its thread runtime into every suite's process.
    """
    from importlib import metadata

    import jax

    out = {"python": platform.python_version(), "jax": jax.__version__}
    for mod, dist in DISTRIBUTIONS.items():
        try:
            out[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # a missing peer is recorded as missing
            out[mod] = None
    return out


def load_avg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def environment() -> dict:
    """Device kind, cores, load and library versions, recorded with every JSON line."""
    import jax

    dev = jax.devices()[0]
    return {
        "device_kind": dev.device_kind, "platform": dev.platform, "device_count": jax.device_count(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "load_avg_1m": load_avg(),
        "versions": dict(versions()), "time": now(),
    }


def env_line(env: dict, threads: str | None = None) -> str:
    """``"2025-..., cpu (x86_64), every thread pinned to core 0, load 1.2"`` for a table's preamble."""
    load = env.get("load_avg_1m")
    parts = [env["time"], f"{env['device_kind']} ({env['machine']})", threads,
             None if load is None else f"load {load:.1f}"]
    return ", ".join(p for p in parts if p)


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
        return NO_PINNING
    return f"every thread pinned to core {core}"


def pin_every_thread() -> str:
    """Pin every thread (including ones started since the last pinning) to the main thread's core."""
    try:
        return pin_threads(sorted(os.sched_getaffinity(0))[0])
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return NO_PINNING


def pin_one_core(core: int | None = None) -> str:
    """Single-threaded XLA, then every thread on one core (default: the first allowed); a description.

    JAX's runtime starts while every core is allowed and is narrowed afterwards: an XLA CPU
    client created in a process that may use one core sizes its thread pools to one thread, and
    a host callback (the exact-OT solver) can then wait forever for a thread (reproduced: eager
    ``fm.metrics.wasserstein`` in a loop hung within a minute).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return NO_PINNING
    try:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    except OSError:  # a cpuset narrower than the machine: keep what is allowed
        pass
    import jax

    jax.devices()
    return pin_threads(allowed[0] if core is None else core)


# -- timers ----------------------------------------------------------------------------------


class Timing(NamedTuple):
    """Wall times of one call: the first call (compilation + one run) apart, then the repeats."""

    first_s: float
    median_s: float
    iqr_s: float  # interquartile range of the repeats
    min_s: float
    cpu_s: float  # median process CPU time of a repeat (every thread: the fairer figure when shared)
    times: list[float]
    out: Any  # the last call's output

    @property
    def compile_s(self) -> float:
        """The first call's excess over a steady call (compilation, for a jitted function)."""
        return max(self.first_s - self.median_s, 0.0)


def _blocked(fn: Callable) -> Any:
    import jax

    return jax.block_until_ready(fn())


def _timing(first: float, wall: list[float], cpu: list[float], out: Any) -> Timing:
    q1, q3 = np.percentile(wall, [25, 75])
    return Timing(first, float(np.median(wall)), float(q3 - q1), float(np.min(wall)),
                  float(np.median(cpu)), wall, out)


def time_fn(fn: Callable[[], Any], repeats: int, *, first_apart: bool = True) -> Timing:
    """Time ``fn()`` (its output blocked until ready): the first call apart, then ``repeats`` calls.

    ``first_apart=False``: no separate first call (``fn`` is already compiled and a call takes
    seconds); ``first_s`` is then the first repeat's time.
    """
    out, first = None, None
    if first_apart:
        t = time.perf_counter()
        out = _blocked(fn)
        first = time.perf_counter() - t
    wall, cpu = [], []
    for _ in range(max(repeats, 1)):
        t, c = time.perf_counter(), time.process_time()
        out = _blocked(fn)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return _timing(wall[0] if first is None else first, wall, cpu, out)


def time_interleaved(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Timing]:
    """Time several calls taking turns (one first call each, then ``repeats`` rounds).

    Alternating puts ours and a peer under the same load on a shared machine; compare medians
    (:func:`speedup`).
    """
    first, out = {}, {}
    for k, call in calls.items():
        t = time.perf_counter()
        out[k] = _blocked(call)
        first[k] = time.perf_counter() - t
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    for _ in range(max(repeats, 1)):
        for k, call in calls.items():
            t, c = time.perf_counter(), time.process_time()
            out[k] = _blocked(call)
            cpu[k].append(time.process_time() - c)
            wall[k].append(time.perf_counter() - t)
    return {k: _timing(first[k], wall[k], cpu[k], out[k]) for k in calls}


def speedup(timings: dict[str, Timing], peer: str, ours: str) -> float:
    """``median(peer) / median(ours)``: above 1, ours is faster."""
    return timings[peer].median_s / timings[ours].median_s


def compile_timed(fn, *args):
    """``(jax.jit(fn).lower(*args).compile(), seconds)``: ahead-of-time compilation, timed."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


class FitTiming(NamedTuple):
    train_s: float  # wall time of the whole fit, compilation included
    compile_s: float | None  # first chunk minus a steady one (None: too few chunks)
    steps_per_s: float | None  # steady state: chunk / median full chunk after the first
    chunk_s: list[float]


def fit_timed(step, state, key, source, target, *, steps: int, batch: int, chunk: int, **fit_kwargs):
    """``fm.training.fit`` timed chunk by chunk: ``(state, history, FitTiming)``."""
    import jax

    import flowjax_fm as fm

    stamps = [time.perf_counter()]

    def on_chunk(s, _metrics):
        jax.block_until_ready(s)
        stamps.append(time.perf_counter())

    state, history = fm.training.fit(step, state, key, source, target, num_steps=steps,
                                     batch_size=batch, progress=False, chunk_size=chunk,
                                     on_chunk=on_chunk, **fit_kwargs)
    per = np.diff(stamps)
    full = per[1:] if steps % chunk == 0 else per[1:-1]
    steady = float(np.median(full)) if len(full) else None
    return state, history, FitTiming(
        float(per.sum()), None if steady is None else float(per[0] - steady),
        None if steady is None else chunk / steady, per.tolist())


# -- the main job (``fm.experiments``) --------------------------------------------------------

CONFIGS = ROOT / "configs"


def experiment_config(name: str, changes: dict):
    """``configs/NAME.json`` with ``changes`` (dotted keys), checkpointing only at the end."""
    from flowjax_fm import experiments as ex

    cfg = ex.load_config(CONFIGS / f"{name}.json")
    return ex.override(cfg, {"checkpoint_every": changes.get("steps", cfg.steps), **changes})


def run_experiment(cfg, workdir: pathlib.Path | None = None, *, keep=None) -> tuple[dict, Any]:
    """``fm.experiments.train_and_evaluate(cfg)`` in ``workdir`` (default: a scratch folder).

    Returns ``(metrics, keep(run_dir))`` (``keep``, e.g. ``fm.experiments.load_run``, reads what
    is needed from the run before a scratch folder is removed). A NaN time (one chunk: no steady
    chunk to take the compilation from) becomes ``None``.
    """
    import tempfile

    from flowjax_fm import experiments as ex

    with tempfile.TemporaryDirectory(prefix="bench_run_") as scratch:
        run_dir = pathlib.Path(workdir or pathlib.Path(scratch) / "run")
        metrics = ex.train_and_evaluate(cfg, run_dir, progress=False)
        kept = keep(run_dir) if keep else None
    for k in ("compile_s", "steps_per_s", "train_s"):
        if isinstance(metrics.get(k), float) and not np.isfinite(metrics[k]):
            metrics[k] = None
    return metrics, kept


def experiment_flops(cfg, kind: str, event_shape: tuple[int, ...], num_classes: int | None = None) -> float | None:
    """XLA's FLOP count of one train step of the run ``cfg`` describes, on one batch."""
    import jax
    import jax.numpy as jnp

    from flowjax_fm import experiments as ex
    from flowjax_fm import training

    cfg = ex.resolve(cfg, kind)
    built = ex.build(cfg, event_shape, num_classes)
    state = training.init_state(built.init, built.optimizer)
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k0, (cfg.batch, *event_shape))
    x1 = jax.random.normal(k1, (cfg.batch, *event_shape))
    if num_classes is None:
        return compiled_flops(built.step, state, k2, x0, x1)
    labels = jnp.arange(cfg.batch, dtype=jnp.int32) % num_classes
    return compiled_flops(lambda s, k, a, b, y: built.step(s, k, a, b, cond=y), state, k2, x0, x1, labels)


# -- how close to the machine's limit --------------------------------------------------------


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large float32 matrix product on the default device: the machine's practical limit."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return 2.0 * n**3 / time_fn(lambda: f(a), repeats).median_s


def cache_resident_peak() -> float:
    """FLOP/s of a 512^2 float32 product: it fits in cache and runs ~2-3x faster here than the 2048^2
    limit, recorded for context where small matrices can exceed "100%" of that limit."""
    return matmul_peak_flops(512, repeats=15)


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
    """``achieved_gflops`` (FLOPs of one call / its time), ``peak_gflops`` and ``of_peak`` as JSON fields.

    ``None`` fields when the backend gives no FLOP count.
    """
    if not flops_per_call or seconds_per_call <= 0:
        return {"achieved_gflops": None, "peak_gflops": peak_flops / 1e9, "of_peak": None}
    achieved = flops_per_call / seconds_per_call
    return {"achieved_gflops": achieved / 1e9, "peak_gflops": peak_flops / 1e9, "of_peak": achieved / peak_flops}


def fmt_limit(row: dict, prefix: str = "") -> str:
    """``"12.3 (41.2%)"``: a row's achieved GFLOP/s (``PREFIXachieved_gflops``) and its share of the peak."""
    if row.get(f"{prefix}achieved_gflops") is None:
        return "-"
    return f"{row[f'{prefix}achieved_gflops']:.2f} ({100 * row[f'{prefix}of_peak']:.1f}%)"


# -- formatting ------------------------------------------------------------------------------


def fmt(value, spec: str = "", missing: str = "-") -> str:
    """``format(value, spec)``, or ``missing`` for ``None``."""
    return missing if value is None else format(value, spec)


def mean_sd(values: Iterable, spec: str = ".3f", count: bool = False) -> str:
    """``"mean +- sd"`` (sd over more than one value; ``" (n)"`` with ``count``), ``"-"`` when empty."""
    v = np.asarray([x for x in values if x is not None], float)
    if not len(v):
        return "-"
    text = format(v.mean(), spec) + (f" +- {format(v.std(ddof=1), spec)}" if len(v) > 1 else "")
    return text + (f" ({len(v)})" if count else "")


def mean_of(rows: Iterable[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


# -- files -----------------------------------------------------------------------------------


def append_jsonl(path: pathlib.Path, rows: Sequence[dict]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    return path


def read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def latest(rows: Iterable[dict], key: Callable[[dict], tuple]) -> list[dict]:
    """The last row of every ``key(row)``, in the order the keys first appear."""
    out: dict[tuple, dict] = {}
    for r in rows:
        out[key(r)] = r
    return list(out.values())


def newest_run(rows: Sequence[dict], stamp: str = "time") -> list[dict]:
    """The rows of the newest run (the largest ``stamp`` field)."""
    if not rows:
        return []
    newest = max(r[stamp] for r in rows)
    return [r for r in rows if r[stamp] == newest]


def write_table(path: pathlib.Path, title: str, preamble: str, header: Sequence[str],
                cells: Sequence[Sequence], extra: str = "") -> pathlib.Path:
    """A markdown file: ``# title``, the preamble, one table, then ``extra`` (more sections)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# {title}\n\n{preamble}\n\n{markdown_table(header, cells)}\n"
    path.write_text(text + (extra.rstrip("\n") + "\n" if extra else ""))
    return path


def markdown_table(header: Sequence[str], cells: Sequence[Sequence]) -> str:
    """``| a | b |`` rows under a header row and a ``|---|`` rule."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in cells])


def long_rows(rows: Iterable[dict], keep: Sequence[str], value: str, series: dict[str, str]) -> list[dict]:
    """Wide rows (one field per library) as long rows for :func:`write_plot`.

    One row per input row and ``series`` entry ``{label: field}`` whose field is set:
    ``{keep fields..., "library": label, value: row[field]}``.
    """
    return [{**{k: r[k] for k in keep}, "library": label, value: r[f]}
            for r in rows for label, f in series.items() if r.get(f) is not None]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _order(v):  # numbers by value (64 before 3072), anything else as text after them
    try:
        return (0, float(str(v).strip()), "")
    except ValueError:
        return (1, 0.0, str(v))


def write_plot(path: pathlib.Path, rows: list[dict], x: str, y: str, series: list[str], *, title: str,
               xlabel: str | None = None, ylabel: str | None = None, logx: bool = True,
               logy: bool = True, panels: str | None = None) -> pathlib.Path | None:
    """A line plot of ``y`` against ``x``, one line per distinct value of the ``series`` keys.

    ``panels``: a key whose values get one subplot each (e.g. the dimension). Rows missing ``x``
    or ``y`` (a peer that did not run) are left out.
    """
    rows = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not rows:
        return None
    plt = _pyplot()
    panel_values = sorted({r[panels] for r in rows}, key=_order) if panels else [None]
    fig, axes = plt.subplots(1, len(panel_values), figsize=(4.8 * len(panel_values), 3.8), squeeze=False)
    for ax, pv in zip(axes[0], panel_values, strict=True):
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            if panels is None or r[panels] == pv:
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
    return _save(fig, plt, path)


def write_bars(path: pathlib.Path, panels: dict[str, dict[str, dict[str, list[float]]]], *,
               ylabel: str, title: str, floor: dict[str, list[float]] | None = None) -> pathlib.Path | None:
    """Grouped bars: ``panels[panel][group][series]`` = values (bar = mean, error bar = sd).

    ``floor``: per panel, a reference value per group drawn as a black mark.
    """
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.2 * len(panels), 7.5), 3.8), squeeze=False)
    for ax, (panel, groups) in zip(axes[0], panels.items(), strict=True):
        names = list(groups)
        series = list(dict.fromkeys(s for g in groups.values() for s in g))
        width = 0.8 / max(len(series), 1)
        for i, s in enumerate(series):
            vals = [groups[g].get(s) or [] for g in names]
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
            ax.bar(xs, [np.mean(v) if v else np.nan for v in vals], width * 0.95, capsize=2, label=s,
                   yerr=[np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals])
        if floor and panel in floor:
            ax.plot(range(len(names)), floor[panel], "k_", ms=30, mew=2, label="floor")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(panel, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def _save(fig, plt, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the suite runner ------------------------------------------------------------------------

Column = tuple[str, Callable[[dict], Any]]


@dataclass(frozen=True)
class Suite:
    """One benchmark suite: its cases, how one case runs, and its table.

    Args:
      name: the results' file stem (``NAME.jsonl``, ``NAME.md``, ``NAME.png``).
      title: the markdown title.
      doc: the command line's description (the suite module's docstring).
      cases: ``cases(ctx)``: the parameters of every case, in order (a generator may decide late).
      run_case: ``run_case(ctx, case)``: builds and runs one case; one row dict or a list of them.
      columns: ``(header, cell(row))`` for the table.
      preamble: ``preamble(ctx, rows)``: the text above the table.
      flags: adds the suite's own flags to the parser.
      quick: ``{flag: value}`` applied under ``--quick`` to flags left at their default.
      repeats: ``(default, quick)`` timed repeats: adds ``--repeats``; ``None`` for no such flag.
      pin: every thread on one core (single-threaded XLA) before JAX starts; adds ``--core``.
      xla_flags: ``XLA_FLAGS`` when unset (e.g. fake CPU devices), set before JAX starts.
      peak: measure the matmul limit (``ctx.peak``) before the cases.
      quick_file: ``--quick`` writes ``NAME_quick.*`` instead of ``NAME.*``.
      write_each: append each case's rows as it finishes (else all at the end, after ``finish``).
      setup: ``setup(ctx)`` before the cases (state in ``ctx.data``).
      finish: ``finish(ctx, rows)`` after the cases, before writing (edits the rows in place).
      history: ``history(ctx, rows_in_file)``: the table shows these rows of ``NAME.jsonl``
        instead of this run's; also enables ``--render`` (the table without running).
      table_rows: ``table_rows(ctx, rows)``: the table's rows (e.g. a mean over seeds).
      extra_md: ``extra_md(ctx, rows)``: markdown after the table.
      plot: ``plot(ctx, rows)``: writes the suite's plots.
    """

    name: str
    title: str
    doc: str
    cases: Callable[[Context], Iterable[dict]]
    run_case: Callable[[Context, dict], dict | list[dict]]
    columns: Sequence[Column]
    preamble: Callable[[Context, list[dict]], str]
    flags: Callable[[argparse.ArgumentParser], None] | None = None
    quick: dict = field(default_factory=dict)
    repeats: tuple[int, int] | None = None
    pin: bool = False
    xla_flags: str = ""
    peak: bool = True
    quick_file: bool = False
    write_each: bool = True
    setup: Callable[[Context], None] | None = None
    finish: Callable[[Context, list[dict]], None] | None = None
    history: Callable[[Context, list[dict]], list[dict]] | None = None
    table_rows: Callable[[Context, list[dict]], list[dict]] | None = None
    extra_md: Callable[[Context, list[dict]], str] | None = None
    plot: Callable[[Context, list[dict]], None] | None = None


@dataclass
class Context:
    """What a suite's functions see: the parsed flags, the environment, the limit, shared state."""

    suite: Suite
    args: argparse.Namespace
    out: pathlib.Path
    threads: str = "threads not pinned"
    env: dict = field(default_factory=dict)
    peak: float | None = None  # matmul FLOP/s measured at the start
    peak_cpu_share: float | None = None  # share of a core this process had meanwhile
    data: dict = field(default_factory=dict)  # the suite's own state across cases

    @property
    def quick(self) -> bool:
        return self.args.quick

    @property
    def repeats(self) -> int | None:
        if self.suite.repeats is None:
            return None
        return self.args.repeats or self.suite.repeats[self.quick]

    @property
    def name(self) -> str:
        return self.suite.name + ("_quick" if self.quick and self.suite.quick_file else "")

    def file(self, ext: str, suffix: str = "") -> pathlib.Path:
        """``RESULTS/NAME{suffix}.{ext}``."""
        return self.out / f"{self.name}{suffix}.{ext}"

    @property
    def command(self) -> str:
        """The command line that reproduces this run, in backquotes."""
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        module = spec.name if spec is not None else f"benchmarks.{self.suite.name}"
        return f"`{shlex.join(['.venv/bin/python', '-m', module, *sys.argv[1:]])}`"


def _as_module() -> None:
    """A suite run as a file (``python benchmarks/bench_x.py``) runs again as a module of the package,
    so that ``benchmarks/__init__`` sets the thread variables before numpy starts."""
    main = sys.modules["__main__"]
    path = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is None and path and pathlib.Path(path).resolve().parent == HERE:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        os.execv(sys.executable, [sys.executable, "-m", f"benchmarks.{pathlib.Path(path).stem}", *sys.argv[1:]])


def positive_int(text: str) -> int:
    """An argparse ``type``: an int >= 1, else a one-line usage error quoting the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def parse(suite: Suite, argv: list[str] | None = None) -> argparse.Namespace:
    """The common flags, the suite's own, and its quick values for flags left at their default."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{suite.name}",
                                 description=suite.doc.strip().splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the suite's smoke version")
    ap.add_argument("--out", default=None,
                    help="results folder (default $FLOWJAX_FM_BENCH_RESULTS, else benchmarks/results)")
    if suite.repeats:
        ap.add_argument("--repeats", type=int, default=None,
                        help=f"timed repeats (default {suite.repeats[0]}, --quick {suite.repeats[1]})")
    if suite.pin:
        ap.add_argument("--core", type=int, default=None, help="pin to this core (default: the first)")
    if suite.history:
        ap.add_argument("--render", action="store_true",
                        help="only rewrite the table and plots from the JSON lines")
    if suite.flags:
        suite.flags(ap)
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in suite.quick.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    return args


def brief(row: dict) -> str:
    """One line of a row for the log: its own fields (not the environment), short numbers."""
    shown = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in row.items()
             if k not in ENV_KEYS and not isinstance(v, dict | list)}
    text = json.dumps(shown)
    return text if len(text) < 400 else text[:397] + "..."


def main(suite: Suite, argv: list[str] | None = None) -> list[dict]:
    """Run ``suite`` from the command line: flags, pinning, cases, JSON lines, table, plots."""
    _as_module()
    args = parse(suite, argv)
    ctx = Context(suite, args, results_dir(args.out))
    if suite.xla_flags:
        os.environ.setdefault("XLA_FLAGS", suite.xla_flags)
    if suite.pin:  # before anything starts JAX's runtime
        ctx.threads = pin_one_core(args.core)
    rows: list[dict] = []
    if not getattr(args, "render", False):
        ctx.env = environment()
        print(json.dumps(ctx.env), flush=True)
        if suite.peak:
            wall, cpu = time.perf_counter(), time.process_time()
            ctx.peak = matmul_peak_flops()
            ctx.peak_cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
            print(f"matmul limit: {ctx.peak / 1e9:.1f} GFLOP/s (CPU share {ctx.peak_cpu_share:.2f}); "
                  f"{ctx.threads}", flush=True)
        if suite.setup:
            suite.setup(ctx)
        start = time.perf_counter()
        for case in suite.cases(ctx):
            got = suite.run_case(ctx, case)
            got = [{**ctx.env, "quick": ctx.quick, **r} for r in ([got] if isinstance(got, dict) else got)]
            for r in got:
                print(f"[{time.perf_counter() - start:.0f} s]", brief(r), flush=True)
            rows += got
            if suite.write_each and got:
                append_jsonl(ctx.file("jsonl"), got)
        if suite.finish:
            suite.finish(ctx, rows)
        if not suite.write_each and rows:
            append_jsonl(ctx.file("jsonl"), rows)
    shown = suite.history(ctx, read_jsonl(ctx.file("jsonl"))) if suite.history else rows
    if not shown:
        raise SystemExit(f"{suite.name}: no rows to show (in {ctx.file('jsonl')})")
    if not ctx.env:  # --render: the newest row's environment
        ctx.env = {k: shown[-1][k] for k in ENV_KEYS if k in shown[-1]}
    table = suite.table_rows(ctx, shown) if suite.table_rows else shown
    path = write_table(ctx.file("md"), suite.title, suite.preamble(ctx, shown), [c[0] for c in suite.columns],
                       [[cell(r) for _, cell in suite.columns] for r in table],
                       suite.extra_md(ctx, shown) if suite.extra_md else "")
    if suite.plot:
        suite.plot(ctx, shown)
    print(path.read_text(), flush=True)
    print(f"wrote {ctx.file('jsonl')}, {path.name}" + (" and the plots" if suite.plot else ""), flush=True)
    return rows
