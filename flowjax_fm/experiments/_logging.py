r"""The metric log of a training run: ``metrics.jsonl`` and TensorBoard event files.

A run directory ``workdir`` gets

* ``workdir/metrics.jsonl``: one JSON object a line, ``{"step": int, "time": float, <tag>: float,
  ...}``, with ``time`` the unix time the line was written and tags such as ``"train/loss"`` or
  ``"eval/w2"``. The file is opened for appending and flushed after every line, so a resumed run
  continues it and a crashed run keeps every line written before the crash. A non-finite value
  (nan, inf, -inf) is written as ``null``, so every line is valid JSON; read ``null`` back as nan.
* ``workdir/tensorboard/events.out.tfevents.*``: the same scalars, written by
  ``tensorboardX.SummaryWriter``, with non-finite values as they are.

Training metrics come a fit chunk at a time (:meth:`MetricLogger.log_chunk`); the value logged at
step :math:`s` is the mean over the steps since the previous logged training step, at most
``log_every`` of them,

.. math:: \bar m_s = \frac{1}{|W_s|} \sum_{k \in W_s} m_k, \qquad
   W_s = \{k : s_{\mathrm{prev}} < k \le s\},

the smoothed curve most trainers show. Step numbering is that of the train state: the step
after :math:`k` optimiser steps is :math:`k`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from flowjax_fm._checks import check_int

__all__ = ["MetricLogger"]

_JSONL = "metrics.jsonl"
_TENSORBOARD = "tensorboard"
_NUMERIC = "biuf"  # bool, int, unsigned, float: the dtype kinds that are logged
_UNIQUE = itertools.count()  # event file names: tensorboardX names them by the second and host
_TB_FLUSH_SECS = 2  # tensorboardX writes from a thread; its flush() does not drain the queue


def _flatten(metrics: Mapping, prefix: str) -> dict:
    """``{"a": {"b": x}}`` -> ``{"prefix/a/b": x}``; an empty prefix adds nothing."""
    out = {}
    for name, value in metrics.items():
        tag = f"{prefix}/{name}" if prefix else str(name)
        if isinstance(value, Mapping):
            out.update(_flatten(value, tag))
        else:
            out[tag] = value
    return out


def _numeric(value) -> np.ndarray | None:
    """``value`` as a NumPy array if it is numeric (bool, int or float), else ``None``."""
    try:
        array = np.asarray(value)
    except Exception:  # anything NumPy cannot hold is not a metric
        return None
    return array if array.dtype.kind in _NUMERIC else None


def _json_value(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricLogger:
    r"""Write a run's metrics to ``workdir/metrics.jsonl`` and to TensorBoard event files.

    :meth:`log_chunk` takes the per-step metrics of one fit chunk (what ``fit`` hands its
    ``on_chunk`` hook) and writes a row at every step :math:`s` of the chunk with
    :math:`s \bmod` ``log_every`` :math:`= 0`, holding for each metric the mean over the steps
    since the previous training row (a window of ``log_every`` steps, fewer after a resume or a
    ``final`` row). Entries with more than one value a step (per-example losses) are first
    reduced to their mean over each step. :meth:`log_scalars` writes one-off values such as
    evaluation results. See the module docstring for the file formats.

    Resuming: a new logger on the same ``workdir`` appends to ``metrics.jsonl`` and starts a new
    event file. Pass ``start_step`` (the restored state's step) to drop what an interrupted run
    wrote after it: jsonl rows with ``step > start_step`` are removed and TensorBoard is told to
    purge events from step ``start_step + 1`` on, so steps logged again do not appear twice.
    Only one logger should write to a ``workdir`` at a time.

    Args:
      workdir: the run directory; created if needed (only when ``enabled``).
      log_every: training rows are written at the steps that are multiples of it.
      enabled: ``False`` makes every method a no-op that touches no file (the processes other
        than 0 of a multi-host run); the arguments are still checked.
      tensorboard: also write TensorBoard event files under ``workdir/tensorboard/``.
      start_step: the step a resumed run starts from; ``None`` keeps everything already there.

    Raises:
      ValueError: if ``log_every`` is not an int >= 1 or ``start_step`` is not an int >= 0.

    Examples:
      >>> import json, tempfile
      >>> import numpy as np
      >>> workdir = tempfile.mkdtemp()
      >>> with MetricLogger(workdir, log_every=2, tensorboard=False) as log:
      ...     log.log_chunk(3, {"loss": np.array([4.0, 3.0, 2.0])})  # steps 1, 2, 3
      ...     log.log_chunk(5, {"loss": np.array([1.0, np.nan])}, final=True)  # steps 4, 5
      ...     log.log_scalars(5, {"w2": 0.25})
      [2]
      [4, 5]
      >>> rows = [json.loads(line) for line in log.path.read_text().splitlines()]
      >>> for row in rows:
      ...     print({k: v for k, v in row.items() if k != "time"})
      {'step': 2, 'train/loss': 3.5}
      {'step': 4, 'train/loss': 1.5}
      {'step': 5, 'train/loss': None}
      {'step': 5, 'eval/w2': 0.25}
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        log_every: int = 100,
        enabled: bool = True,
        tensorboard: bool = True,
        start_step: int | None = None,
    ):
        self.log_every = check_int("log_every", log_every, 1)
        if start_step is not None:
            start_step = check_int("start_step", start_step, 0)
        self.workdir = Path(workdir)
        self.enabled = bool(enabled)
        self.tensorboard = bool(tensorboard)
        self.start_step = start_step
        self.closed = False
        # per prefix: the step the next chunk should start at, and the open window's sums / counts
        self._windows: dict[str, tuple[int, dict[str, float], dict[str, int]]] = {}
        self._file = None
        self._writer = None
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if start_step is not None:
            self._drop_rows_after(start_step)
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()
        if self._file.tell() > 0 and not self._ends_with_newline():
            self._file.write("\n")  # a line cut short by a crash stays on its own line
            self._file.flush()
        if tensorboard:
            from tensorboardX import SummaryWriter  # imported here: it imports torch when installed

            self._writer = SummaryWriter(
                logdir=str(self.workdir / _TENSORBOARD),
                purge_step=None if start_step is None else start_step + 1,
                flush_secs=_TB_FLUSH_SECS,
                filename_suffix=f".{os.getpid()}.{next(_UNIQUE):04d}",
            )

    @property
    def path(self) -> Path:
        """The ``metrics.jsonl`` file."""
        return self.workdir / _JSONL

    # -- the public methods --------------------------------------------------------------------

    def log_chunk(
        self,
        state_step_after: int,
        chunk_metrics: Mapping,
        *,
        final: bool = False,
        prefix: str = "train",
    ) -> list[int]:
        r"""Log the per-step metrics of one chunk that ended at step ``state_step_after``.

        The chunk's :math:`n` steps are ``state_step_after - n + 1 .. state_step_after``. A row is
        written at each of them that is a multiple of ``log_every``, and at the last one when
        ``final``; each metric's value is its mean over the steps since the previous row of this
        ``prefix`` (the window carries over from chunk to chunk; a chunk that does not start
        right after the previous one starts a new window). Entries of shape ``(n, ...)`` are
        averaged over each step first; non-numeric entries are skipped, and so is ``"step"``
        (``fit``'s step counter before each update; the row's step is the one after it).

        Args:
          state_step_after: the train state's step after the chunk.
          chunk_metrics: name -> array with one row per step, shape ``(n,)`` or ``(n, ...)``
            (nested dicts give tags ``"train/a/b"``).
          final: also write a row at the chunk's last step (the end of training).
          prefix: the tags' prefix, ``"train"`` -> ``"train/loss"``.

        Returns:
          The steps at which rows were written (also when the logger is disabled).

        Raises:
          ValueError: if ``state_step_after`` is not an int >= n, an entry is not a per-step
            array, or the entries differ in their number of steps.
          TypeError: if ``chunk_metrics`` is not a mapping.
        """
        self._check_open()
        if not isinstance(chunk_metrics, Mapping):
            raise TypeError(f"chunk_metrics must be a dict of per-step arrays, got {type(chunk_metrics)}")
        flat = _flatten({k: v for k, v in chunk_metrics.items() if k != "step"}, prefix)
        arrays = {tag: a for tag, value in flat.items() if (a := _numeric(value)) is not None}
        counted = dict(arrays)  # what says how many steps the chunk ran, "step" included
        if (a := _numeric(chunk_metrics.get("step"))) is not None:
            counted["step"] = a
        if not counted:
            return []
        shapes = {tag: a.shape for tag, a in counted.items()}
        if any(len(shape) == 0 for shape in shapes.values()) or len({s[0] for s in shapes.values()}) > 1:
            raise ValueError(
                f"chunk_metrics must hold arrays of shape (n, ...) with one row per step "
                f"and the same n, got shapes {shapes}"
            )
        n = next(iter(shapes.values()))[0]
        last = check_int("state_step_after", state_step_after, n)
        first = last - n + 1
        expected, sums, counts = self._windows.get(prefix, (first, {}, {}))
        if expected != first:  # a gap or a restart: the open window belongs to other steps
            sums, counts = {}, {}
        self._windows[prefix] = (last + 1, sums, counts)
        # one float per step and tag; an entry with no values in a step has nothing to average
        per_step = {
            tag: a.reshape(n, -1).astype(np.float64).mean(axis=1)
            for tag, a in arrays.items()
            if n and a[0].size > 0
        }
        if not per_step:
            return []
        offsets = [i for i in range(n) if (first + i) % self.log_every == 0]
        if final and (not offsets or offsets[-1] != n - 1):
            offsets.append(n - 1)

        def add(begin, end):
            for tag, values in per_step.items():
                sums[tag] = sums.get(tag, 0.0) + float(values[begin:end].sum())
                counts[tag] = counts.get(tag, 0) + (end - begin)

        logged, begin, stamp = [], 0, time.time()
        for end in (i + 1 for i in offsets):
            add(begin, end)
            self._write(first + end - 1, {tag: sums[tag] / counts[tag] for tag in sums}, stamp)
            logged.append(first + end - 1)
            sums, counts, begin = {}, {}, end
        if begin < n:
            add(begin, n)  # the tail after the last row stays in the open window
        self._windows[prefix] = (last + 1, sums, counts)
        self._flush_writer()
        return logged

    def log_scalars(self, step: int, values: Mapping, prefix: str = "eval") -> None:
        """Write one row of one-off values (evaluation results) at ``step``.

        Args:
          step: the train state's step the values belong to.
          values: name -> a number (a Python, NumPy or JAX scalar, or an array of one element);
            non-numeric values (strings, ``None``) are skipped; nested dicts give ``"eval/a/b"``.
          prefix: the tags' prefix, ``"eval"`` -> ``"eval/w2"``; ``""`` for none.

        Raises:
          ValueError: if ``step`` is not an int >= 0 or a value has more than one element.
          TypeError: if ``values`` is not a mapping.
        """
        self._check_open()
        step = check_int("step", step, 0)
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a dict of numbers, got {type(values)}")
        row = {}
        for tag, value in _flatten(values, prefix).items():
            a = _numeric(value)
            if a is None:
                continue
            if a.size != 1:
                raise ValueError(f"values[{tag!r}] must be a single number, got shape {a.shape}")
            row[tag] = float(a.reshape(()))
        if row:
            self._write(step, row, time.time())
            self._flush_writer()

    def close(self) -> None:
        """Flush and close the files; calling it again does nothing."""
        if self.closed:
            return
        self.closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MetricLogger({str(self.workdir)!r}, log_every={self.log_every}, "
            f"enabled={self.enabled}, tensorboard={self.tensorboard})"
        )

    # -- writing --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"the MetricLogger of {str(self.workdir)!r} is closed")

    def _write(self, step: int, values: dict[str, float], stamp: float) -> None:
        if self._file is not None:
            row = {"step": int(step), "time": stamp, **{t: _json_value(v) for t, v in values.items()}}
            self._file.write(json.dumps(row, allow_nan=False) + "\n")
            self._file.flush()
        if self._writer is not None:
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, global_step=int(step), walltime=stamp)

    def _flush_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _drop_rows_after(self, start_step: int) -> None:
        """Rewrite ``metrics.jsonl`` (atomically) without rows past ``start_step``."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        kept = []
        for line in lines:
            try:
                row = json.loads(line)
                step = int(row["step"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            if step <= start_step:
                kept.append(line)
        if len(kept) == len(lines):
            return
        mode = os.stat(self.path).st_mode & 0o777
        fd, tmp = tempfile.mkstemp(dir=self.workdir, prefix=f".{_JSONL}.", suffix=".tmp")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
