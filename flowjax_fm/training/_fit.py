r"""The training loop: chunks of steps inside one compiled ``lax.scan``, Python between them.

There is one loop. :func:`fit` takes any step ``step(state, key, x0, x1, cond) -> (state,
metrics)`` and one batch abstraction (:mod:`flowjax_fm.training._data`): samplers, arrays
visited in epochs, ``(x, cond)`` arrays, paired arrays, labelled images, a ``transform``
hook. The compiled chunk is cached on what it depends on (the step's static parts, the batch
plan, shapes and dtypes), and the step's float hyperparameters are arguments, so a second
``fit`` with the same step compiles nothing and a sweep of ``sigma`` compiles once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import Future

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import (
    check_bool,
    check_choice,
    check_int,
    check_key,
    check_labels,
    check_positive_int,
    first_line,
)
from flowjax_fm._pytree import hash_key
from flowjax_fm.training._data import Batch, initial_streams, make_plan

__all__ = ["PAIRINGS", "fit", "NonFiniteLossError", "RuntimeCheckError"]


class NonFiniteLossError(FloatingPointError):
    """Training met a non-finite loss; ``state`` is the last state whose losses were finite.

    Attributes:
      step: the first step whose loss was not finite.
      state: the state before the chunk that failed (every loss up to it finite): resume
        from it, or save it.
      history: the history of the chunks completed before the failure (a dict of numpy
        arrays, as :func:`fit` returns; empty if the first chunk failed).
    """

    def __init__(self, message: str, step: int, state, history: dict | None = None):
        super().__init__(message)
        self.step = step
        self.state = state
        self.history = {} if history is None else history


class RuntimeCheckError(NonFiniteLossError, RuntimeError):
    """A run-time check inside the compiled training failed (an ``equinox.error_if``).

    The couplings, paths and models check what can only be known while running (an
    unconverged Sinkhorn plan, out-of-range traced labels, non-finite values) and raise
    through :func:`equinox.error_if`; under ``jit`` that arrives as a bare
    ``JaxRuntimeError`` from inside a compiled chunk. :func:`fit` turns it into this error,
    which names the failed check and the chunk of steps where it happened and, like
    :class:`NonFiniteLossError` (its base class: one ``except`` keeps the last good state for
    both), carries ``state`` (the state before that chunk), ``step`` (the chunk's first step)
    and ``history``. It is also a ``RuntimeError``, what equinox raises. To find the exact
    step, resume from ``err.state`` with ``chunk_size=1``: batches depend only on the key and
    the step number, so the run repeats exactly.
    """


def _is_check_failure(err: BaseException) -> bool:
    """Whether ``err`` is an ``equinox.error_if`` failure (eager, or from a compiled program)."""
    return "EquinoxRuntimeError" in type(err).__name__ or "EquinoxRuntimeError" in str(err)


def _num_classes(step) -> int | None:
    """The class count of the model behind ``step`` (a TrainStep or a driver around one)."""
    train_step = getattr(step, "train_step", step)
    model = getattr(train_step, "model", None)
    value = getattr(model, "num_classes", None)
    return value if isinstance(value, int) else None


def _check_data_labels(step, plan, data) -> None:
    """Labels given as arrays ``(x, labels)`` checked once against the model's classes."""
    k = _num_classes(step)
    if k is None or plan.target != "array" or data["target"][1] is None:
        return
    x, labels = data["target"]
    if not hasattr(labels, "dtype"):
        raise ValueError(
            f"the model is class-conditional (num_classes={k}): the condition must be one "
            f"array of integer labels, got {type(labels).__name__}"
        )
    try:
        check_labels("labels", labels, batch=x.shape[0], num_classes=k + 1)
    except ValueError as err:
        v = np.asarray(labels)
        if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer) or v.shape[0] != x.shape[0]:
            raise ValueError(f"{err} (the labels of target (x, labels), one per row of x)") from None
        row = int(np.argmax((v < 0) | (v > k)))
        raise ValueError(
            f"{err}: row {row} has label {int(v[row])}; the model has num_classes={k} (labels "
            f"0..{k - 1}, and {k} for the null class)"
        ) from None


# -- splitting a step into what is traced and what is static ------------------------------


def _is_dynamic(leaf) -> bool:
    """Arrays and Python floats are traced; everything else (functions, ints, strings) is static."""
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | float) and not isinstance(
        leaf, bool
    )


class _Static:
    """The static part of a pytree (treedef and non-array leaves), hashable for ``jit``."""

    def __init__(self, treedef, mask, leaves):
        self.treedef, self.mask, self.leaves = treedef, mask, leaves
        self._key = (treedef, mask, tuple(hash_key(leaf) for leaf in leaves))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key == other._key

    def combine(self, dynamic):
        it_dyn, it_static = iter(dynamic), iter(self.leaves)
        leaves = [next(it_dyn) if m else next(it_static) for m in self.mask]
        return jax.tree.unflatten(self.treedef, leaves)


def _partition(tree):
    leaves, treedef = jax.tree.flatten(tree)
    mask = tuple(_is_dynamic(leaf) for leaf in leaves)
    dynamic = [leaf for leaf, m in zip(leaves, mask, strict=True) if m]
    static = [leaf for leaf, m in zip(leaves, mask, strict=True) if not m]
    return dynamic, _Static(treedef, mask, tuple(static))


# -- the compiled chunk ------------------------------------------------------------------


def _step_key(key, step):
    """The key handed to the step of number ``step`` (its pairing and loss halves follow)."""
    return jax.random.split(jax.random.fold_in(key, step), 3)[2]


def _one_step(step, plan, key, data, carry, pairs=None):
    state, streams = carry
    batch, streams, epoch = plan.draw(key, state.step, streams, data)
    k_step = _step_key(key, state.step)
    extra = {}
    if pairs is not None:  # paired ahead of time (pairing="prefetch"): re-order, skip pairing
        source, target = pairs
        take = lambda idx: lambda a: jnp.take(a, idx, axis=0)
        batch = Batch(take(source)(batch.x0), take(target)(batch.x1),
                      None if batch.cond is None else jax.tree.map(take(target), batch.cond))
        extra = {"paired": True}
    if batch.cond is None:
        new_state, metrics = step(state, k_step, batch.x0, batch.x1, **extra)
    else:
        new_state, metrics = step(state, k_step, batch.x0, batch.x1, batch.cond, **extra)
    if not isinstance(metrics, dict):
        raise ValueError(f"a step must return (state, metrics) with metrics a dict, got {type(metrics)}")
    metrics = dict(metrics, step=state.step)
    if epoch is not None:
        metrics["epoch"] = epoch
    return (new_state, streams), metrics


@functools.partial(jax.jit, static_argnames=("static", "plan", "length", "unroll"))
def _chunk(dynamic, key, data, carry, pairs, *, static, plan, length, unroll):
    step = static.combine(dynamic)
    body = lambda c, p: _one_step(step, plan, key, data, c, p)
    return jax.lax.scan(body, carry, pairs, length=length, unroll=unroll)


# -- pairing ahead of the step, on worker threads ------------------------------------------


@functools.partial(jax.jit, static_argnames=("static", "plan", "length", "shards"))
def _pair_block(dynamic, key, data, streams, start, *, static, plan, length, shards):
    """The pairings of steps ``start .. start + length - 1``: ``(source, target)``, each
    ``(length, B)`` int32, from the batches exactly as the compiled chunk draws them."""
    train_step = static.combine(dynamic)
    steps = start + jnp.arange(length, dtype=jnp.int32)

    def draw(streams, s):
        batch, streams, _ = plan.draw(key, s, streams, data)
        return streams, batch

    _, batches = jax.lax.scan(draw, streams, steps)
    k_steps = jax.vmap(lambda s: _step_key(key, s))(steps)
    # one vmapped coupling: a host solver gets the whole block in one call (a C loop, GIL free)
    pair = functools.partial(train_step.pairing, shards=shards)
    pairing = jax.vmap(pair)(k_steps, batches.x0, batches.x1, batches.cond)
    return pairing.source.astype(jnp.int32), pairing.target.astype(jnp.int32)


PAIRINGS = ("auto", "in_step", "prefetch")
_BLOCK_CELLS = 2**22  # cost cells per pairing program (16 MiB in float32): block = this // B^2
_BLOCK_STEPS = 64  # and at most this many steps


def _pairing_step(step):
    """``(TrainStep, shards)`` whose pairing fit can compute ahead for ``step``, else
    ``(None, reason)``."""
    from flowjax_fm.training._step import TrainStep

    if isinstance(step, TrainStep):
        train_step = step
    else:
        train_step = getattr(step, "train_step", None)
        if not isinstance(train_step, TrainStep):
            return None, (
                "the step is neither a TrainStep (make_train_step) nor a driver around one "
                "(shard_step, pmap_step), so fit cannot know how it pairs"
            )
    if train_step.axis_name is not None:
        return None, "a step with axis_name runs inside your own pmap, which pairs in the step"
    return train_step, getattr(step, "pairing_shards", 1)


def _has_callback(jaxpr) -> bool:
    """Whether ``jaxpr`` calls the host to compute something (a host solver), not counting
    equinox's ``error_if`` callbacks, which run only to raise an error."""
    for eqn in jaxpr.eqns:
        if "callback" in eqn.primitive.name:
            fn = getattr(eqn.params.get("callback"), "callback_func", None)
            if not getattr(fn, "__module__", "").startswith("equinox"):
                return True
        for value in eqn.params.values():
            if any(_has_callback(sub) for sub in _sub_jaxprs(value)):
                return True
    return False


class _Prefetcher:
    """Pairings of fixed blocks of steps, computed ``ahead`` steps in advance on a thread pool.

    Block ``k`` holds steps ``[k L, (k + 1) L)`` (``L`` depends only on the batch size), so a
    step's pairing is computed by the same program at the same position whatever the chunk
    sizes and wherever a run was resumed.
    """

    def __init__(self, compute, block: int, workers: int, ahead: int, stop: int, concurrent: bool):
        from concurrent.futures import ThreadPoolExecutor

        self.compute, self.block, self.stop = compute, block, stop
        self.ahead = ahead if concurrent else 0
        self.pool = (ThreadPoolExecutor(workers, thread_name_prefix="flowjax-fm-pairing")
                     if concurrent else None)
        self.futures: dict = {}
        self.next_block = None

    def _submit(self, k: int):
        if self.pool is not None:
            return self.pool.submit(self.compute, k * self.block, self.block)
        done = Future()  # between chunks, on this thread
        done.set_result(self.compute(k * self.block, self.block))
        return done

    def _request(self, upto: int) -> None:
        last = (min(upto, self.stop) - 1) // self.block
        while self.next_block is not None and self.next_block <= last:
            k = self.next_block
            self.futures[k] = self._submit(k)
            self.next_block += 1

    def take(self, first: int, length: int):
        """``(source, target)`` arrays ``(length, B)`` for steps ``[first, first + length)``."""
        if self.next_block is None:
            self.next_block = first // self.block
        self._request(first + length + self.ahead)
        parts = []
        for k in range(first // self.block, (first + length - 1) // self.block + 1):
            src, tgt = self.futures[k].result()
            lo = max(first - k * self.block, 0)
            hi = min(first + length - k * self.block, self.block)
            parts.append((src[lo:hi], tgt[lo:hi]))
        for k in [k for k in self.futures if (k + 1) * self.block <= first + length]:
            del self.futures[k]  # fully consumed
        if self.ahead:
            self._request(first + length + self.ahead)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(2))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


_UNROLL_CACHE: dict = {}


def _sub_jaxprs(value):
    """The jaxprs inside an equation parameter (scan / cond / pjit bodies)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _sub_jaxprs(item)


def _has_convolution(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for value in eqn.params.values():
            if any(_has_convolution(sub) for sub in _sub_jaxprs(value)):
                return True
    return False


def _auto_unroll(dynamic, static, plan, key, data, carry) -> int:
    """Steps per unrolled block on XLA:CPU: 10 for a convolutional step, else 0 (rolled scan).

    XLA:CPU runs convolutions inside a rolled ``while`` loop about 15x slower than outside
    one (jax 0.10, the package's UNet); an MLP is slower when unrolled. The step's jaxpr says
    which it is. Other backends always run the rolled scan.
    """
    if jax.default_backend() != "cpu":
        return 0
    cache_key = (static, plan)
    if cache_key not in _UNROLL_CACHE:
        step = static.combine(dynamic)
        jaxpr = jax.make_jaxpr(lambda c: _one_step(step, plan, key, data, c))(carry)
        _UNROLL_CACHE[cache_key] = 10 if _has_convolution(jaxpr.jaxpr) else 0
    return _UNROLL_CACHE[cache_key]


def fit(
    step: Callable,
    state,
    key: jax.Array,
    source,
    target,
    *,
    num_steps: int,
    batch_size: int,
    progress: bool = True,
    chunk_size: int = 500,
    on_chunk: Callable | None = None,
    paired: bool = False,
    transform: Callable | None = None,
    unroll: int | None = None,
    desc: str = "train",
    pairing: str = "auto",
    prefetch: int = 2,
    workers: int | None = None,
):
    r"""Train for ``num_steps`` steps, running chunks of steps inside one compiled ``lax.scan``.

    Step :math:`s` draws its batch from ``k = fold_in(key, s)`` (split into source, target and
    step keys) and, for arrays, from an endless stream of epochs (every row exactly once per
    epoch, each epoch a fresh permutation drawn inside the compiled program), so a run resumed
    from a saved state continues exactly as the uninterrupted one. Python only runs between
    chunks (progress bar, ``on_chunk``, the non-finite check).

    Compiled chunks are cached on the step's static parts, the batch plan and the shapes: a
    second call with the same step (and the same samplers, shapes and dtypes) compiles
    nothing, and the step's float hyperparameters (``sigma``, ``epsilon``, ...) are arguments,
    so a sweep over them compiles once.

    Args:
      step: any ``step(state, key, x0, x1[, cond]) -> (state, metrics)`` (from
        :func:`make_train_step`, a data-parallel driver, or your own function around one);
        ``metrics`` is a dict, its entries (scalars or per-example arrays) are stacked per
        step in ``history``.
      state: the :class:`TrainState` to start from (its ``step`` counter is honoured).
      key: a ``jax.random.key``.
      source: a sampler ``(key, n) -> (n, *event)``, an array of points, or ``None`` for
        standard normal noise shaped like the data.
      target: a sampler ``(key, n) -> x`` or ``(key, n) -> (x, cond)``; an array ``x``; or a
        tuple ``(x, cond)`` of arrays with the same leading size (``cond``: labels ``(N,)``
        int, vectors ``(N, k)`` float, or a pytree). Conditions follow their rows into
        ``step(state, key, x0, x1, cond)``.
      num_steps: steps to run from ``state.step``; batch_size: examples per step.
      progress: show a tqdm progress bar.
      chunk_size: steps per compiled chunk.
      on_chunk: optional ``on_chunk(state, metrics)`` called after every chunk (checkpoints).
      paired: ``source`` and ``target`` are arrays whose rows go together (reflow pairs):
        both are read with the same indices.
      transform: optional ``transform(key, batch) -> batch`` on each
        :class:`~flowjax_fm.training.Batch` ``(x0, x1, cond)`` (augmentation, dequantisation).
      unroll: on XLA:CPU, run each chunk as compiled blocks of this many fully unrolled steps
        (convolutions are ~15x slower in a rolled loop there); ``None`` decides from the
        step (10 if it convolves, else 0) and ``0`` always runs one rolled scan. Results do
        not depend on it.
      desc: the progress bar's label.
      pairing: where the coupling runs. ``"in_step"``: inside the compiled step (the device
        waits for it). ``"prefetch"``: on ``workers`` host threads, ``prefetch`` chunks
        ahead of the step, which then trains on the re-ordered batch (``paired=True``): the
        pairing of batch ``s + 1`` overlaps the training of batch ``s``, and a host solver
        (exact OT) leaves the compiled step, so it never meets the step's collectives. The
        pairs are those of ``"in_step"`` (up to near-ties within float rounding): step ``s``
        draws the same batch from the same key,
        and its pairing is computed in blocks of steps fixed by ``batch_size`` alone, so it
        depends only on ``key`` and ``s`` (resuming is exact). Needs a
        :class:`TrainStep` or a driver around one. On XLA:CPU with a driver over several
        (fake) devices the pairing runs between chunks, not beside them: a computation
        beside the collectives can starve the thread pool their rendezvous waits on.
        ``"auto"`` (default): ``"prefetch"`` when the step's pairing calls the host (exact
        OT through the compiled solver, Sinkhorn's ``"rounded"``), else ``"in_step"``.
      prefetch: chunks of pairings computed ahead (an int ``>= 1``).
      workers: pairing threads (an int ``>= 1``; ``None``: the cores this process may use,
        at most 4: the threads and the step share them, and a host solver releases the GIL).

    Returns:
      ``(state, history)`` with ``history`` a dict of numpy arrays, one entry per step: the
      step's metrics, ``step`` and, when arrays are read, ``epoch``.

    Raises:
      ValueError: ``num_steps`` not an int ``>= 0``; ``batch_size``, ``chunk_size``,
        ``prefetch`` or ``workers`` not an int ``>= 1`` (a bool is refused, NumPy ints are
        accepted); ``pairing`` not one of :data:`PAIRINGS`, or ``"prefetch"`` for a step
        whose pairing fit cannot run apart (the message says why); ``unroll`` not ``None`` or
        an int ``>= 0``; ``progress`` or ``paired`` not a bool; bad data arrays or
        conditions; for a class-conditional model (``num_classes = K``), labels in
        ``(x, labels)`` that are not integers of shape ``(N,)`` in ``[0, K]`` (checked once,
        before training; the message quotes the offending row).
      TypeError: ``step``, ``on_chunk`` or ``transform`` not callable, a ``key`` that is not
        a ``jax.random.key``, a ``state`` without a ``step`` counter.
      NonFiniteLossError: when ``metrics["loss"]`` is not finite; it names the step and
        carries the state from before the failing chunk and the history so far.
      RuntimeCheckError: a run-time check inside a step failed (an unconverged Sinkhorn plan,
        out-of-range traced labels, ...): it names the check and the chunk of steps, and
        carries the state from before that chunk and the history so far.

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (16,), rngs=nnx.Rngs(0))
      >>> opt = optax.adam(1e-3)
      >>> step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath())
      >>> src = lambda k, n: jax.random.normal(k, (n, 2))
      >>> state, hist = fit(step, fm.training.init_state(model, opt), jax.random.key(0), src,
      ...                   src, num_steps=20, batch_size=8, progress=False, chunk_size=10)
      >>> int(state.step), hist["loss"].shape
      (20, (20,))
      >>> data = jax.random.normal(jax.random.key(1), (12, 2)) + 3.0  # 12 rows: 3 steps an epoch
      >>> state, hist = fit(step, fm.training.init_state(model, opt), jax.random.key(0), None,
      ...                   data, num_steps=7, batch_size=4, progress=False)
      >>> hist["epoch"].tolist()
      [0, 0, 0, 1, 1, 1, 2]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    num_steps = check_int("num_steps", num_steps, 0)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if unroll is not None:
        unroll = check_int("unroll", unroll, 0)
    progress = check_bool("progress", progress)
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str (the progress bar's label), got {type(desc).__name__}")
    if not callable(step):
        raise TypeError(f"step must be a function (state, key, x0, x1[, cond]); got {type(step)}")
    if on_chunk is not None and not callable(on_chunk):
        raise TypeError(f"on_chunk must be None or a function (state, metrics), got {type(on_chunk)}")
    if not hasattr(state, "step"):
        raise TypeError(
            f"state must be a TrainState (fm.training.init_state) or carry a step counter, got "
            f"{type(state).__name__}"
        )
    check_key(key)
    check_choice("pairing", pairing, PAIRINGS)
    prefetch = check_positive_int("prefetch", prefetch)
    if workers is None:
        workers = max(1, min(4, _usable_cpus()))
    workers = check_positive_int("workers", workers)
    tokens = bool(getattr(getattr(step, "objective", None), "discrete", False))
    plan, data = make_plan(source, target, batch_size=batch_size, paired=paired,
                           transform=transform, tokens=tokens)
    _check_data_labels(step, plan, data)
    dynamic, static = _partition(step)
    start = int(jax.device_get(state.step))
    streams = initial_streams(plan, key, start, data)
    prefetcher = None
    if num_steps:
        prefetcher = _make_prefetcher(
            pairing, step, plan, key, data, streams, start, start + num_steps,
            batch_size=batch_size, chunk_size=chunk_size, prefetch=prefetch, workers=workers,
        )

    def run_block(state, streams, length, unroll_block, pairs):
        (state, streams), metrics = _chunk(
            dynamic, key, data, (state, streams), pairs, static=static, plan=plan,
            length=length, unroll=unroll_block,
        )
        return state, streams, metrics

    def run_chunk(state, streams, length, block):
        pairs = None if prefetcher is None else prefetcher.take(start + done, length)
        if not block:
            state, streams, metrics = run_block(state, streams, length, 1, pairs)
            return state, streams, jax.device_get(metrics)
        parts = []
        for begin in range(0, length, block):
            n = min(block, length - begin)
            part = None if pairs is None else tuple(p[begin : begin + n] for p in pairs)
            state, streams, m = run_block(state, streams, n, n, part)
            parts.append(jax.device_get(m))
        return state, streams, jax.tree.map(lambda *a: np.concatenate(a), *parts)

    history: dict[str, list] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=desc, unit="step", dynamic_ncols=True)
    concat = lambda parts: jax.tree.map(lambda *a: np.concatenate(a), *parts)
    so_far = lambda: {k: concat(v) for k, v in history.items()}
    done = 0
    try:
        if num_steps and unroll is None:
            unroll = _auto_unroll(dynamic, static, plan, key, data, (state, streams))
        while done < num_steps:
            length = min(chunk_size, num_steps - done)
            try:
                new_state, new_streams, metrics = run_chunk(state, streams, length, unroll)
            except Exception as err:  # an eqx.error_if inside the compiled chunk
                # (jax reports it as a JaxRuntimeError, or a ValueError from inside a scan)
                if isinstance(err, NonFiniteLossError) or not _is_check_failure(err):
                    raise
                first = start + done
                raise RuntimeCheckError(
                    f"a run-time check failed in the chunk of steps {first}..{first + length - 1}: "
                    f"{first_line(err)}; keeping the state from step {first} (err.state; resume "
                    "from it with chunk_size=1 to find the exact step)",
                    step=first,
                    state=state,
                    history=so_far(),
                ) from err
            if "loss" in metrics:
                losses = np.asarray(metrics["loss"])
                bad = ~np.isfinite(losses.reshape(length, -1)).all(axis=1)
                if bad.any():
                    first = int(np.asarray(metrics["step"])[np.argmax(bad)])
                    raise NonFiniteLossError(
                        f"non-finite loss ({losses[np.argmax(bad)]}) at step {first}; "
                        f"keeping the state from step {int(jax.device_get(state.step))}",
                        step=first,
                        state=state,
                        history=so_far(),
                    )
            state, streams = new_state, new_streams
            for name, value in metrics.items():
                history.setdefault(name, []).append(jax.tree.map(np.asarray, value))
            done += length
            if bar is not None:
                bar.update(length)
                if "loss" in metrics:
                    bar.set_postfix(loss=f"{np.mean(metrics['loss']):.4f}")
            if on_chunk is not None:
                on_chunk(state, metrics)
    finally:
        if bar is not None:
            bar.close()
        if prefetcher is not None:
            prefetcher.close()
    return state, so_far()


_AUTO_CACHE: dict = {}


def _usable_cpus() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this OS
        return os.cpu_count() or 1


def _make_prefetcher(pairing, step, plan, key, data, streams, start, stop, *, batch_size,
                     chunk_size, prefetch, workers):
    """The :class:`_Prefetcher` for ``pairing`` (``None`` when pairing stays in the step)."""
    if pairing == "in_step":
        return None
    train_step, shards = _pairing_step(step)
    if train_step is None:
        if pairing == "prefetch":
            raise ValueError(f"pairing='prefetch' cannot pair ahead for this step: {shards}")
        return None
    pdyn, pstatic = _partition(train_step)
    if pairing == "auto":
        cache_key = (pstatic, plan, shards)
        if cache_key not in _AUTO_CACHE:
            def one(streams):
                batch, _, _ = plan.draw(key, jnp.asarray(start, jnp.int32), streams, data)
                return pstatic.combine(pdyn).pairing(key, batch.x0, batch.x1, batch.cond,
                                                     shards=shards)

            try:
                _AUTO_CACHE[cache_key] = _has_callback(jax.make_jaxpr(one)(streams).jaxpr)
            except Exception:  # noqa: BLE001 - bad input: the step itself reports it, in the step
                return None
        if not _AUTO_CACHE[cache_key]:
            return None
    block = max(1, min(_BLOCK_STEPS, _BLOCK_CELLS // batch_size**2))  # fixed by the batch size

    def compute(first, length):
        block_streams = initial_streams(plan, key, first, data)
        src, tgt = _pair_block(pdyn, key, data, block_streams, jnp.asarray(first, jnp.int32),
                               static=pstatic, plan=plan, length=length, shards=shards)
        return np.asarray(src), np.asarray(tgt)

    # On XLA:CPU a program running beside a collective one can starve the thread pool that the
    # (fake) devices' rendezvous waits on: there the pairing runs between chunks instead.
    concurrent = jax.default_backend() != "cpu" or getattr(step, "num_devices", 1) == 1
    return _Prefetcher(compute, block, workers, ahead=prefetch * chunk_size, stop=stop,
                       concurrent=concurrent)
