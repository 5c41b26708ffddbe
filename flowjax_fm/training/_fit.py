"""The training loop: chunks of steps inside ``lax.scan``, a progress bar between chunks."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["fit", "NonFiniteLossError", "batch_source", "run_scan_chunks"]


class NonFiniteLossError(FloatingPointError):
    """Training met a non-finite loss; ``state`` is the last state whose losses were finite."""

    def __init__(self, message: str, step: int, state):
        super().__init__(message)
        self.step = step
        self.state = state


def batch_source(source, name: str):
    """Turn a sampler ``(key, n) -> (n, *event)`` or an array of points into ``draw(key, n, data)``.

    Returns ``(draw, data)``: ``data`` is the array (passed to the compiled chunk as an argument,
    never baked in as a constant) or ``None`` for a sampler. Arrays are drawn with replacement.
    """
    if callable(source):
        return (lambda key, n, data: source(key, n)), None
    data = jnp.asarray(source)
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"{name} must be points shaped (N, *event) with N > 0, got {data.shape}")
    if not jnp.issubdtype(data.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point, got dtype {data.dtype}")

    def draw(key, n, data):
        idx = jax.random.randint(key, (n,), 0, data.shape[0])
        return jnp.take(data, idx, axis=0)

    return draw, data


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
):
    r"""Train for ``num_steps`` steps, running chunks of steps inside one compiled ``lax.scan``.

    Step :math:`s` uses ``k = fold_in(key, s)`` split into source, target and step keys, so a
    run resumed from a saved state continues exactly as the uninterrupted one would. Python
    only runs between chunks (progress bar, ``on_chunk`` callback, the non-finite check).

    Args:
      step: a train step ``(state, key, x0, x1) -> (state, metrics)`` (from
        :func:`make_train_step`, not yet jitted).
      state: the :class:`TrainState` to start from (its ``step`` counter is honoured).
      key: a ``jax.random.key``.
      source, target: samplers ``(key, n) -> (n, *event)`` or arrays of points to draw from.
      num_steps: steps to run from ``state.step``; batch_size: examples per step.
      progress: show a tqdm progress bar.
      chunk_size: steps per compiled chunk.
      on_chunk: optional ``on_chunk(state, metrics)`` called after every chunk (checkpoints).

    Returns:
      ``(state, history)`` with ``history`` a dict of numpy arrays, one entry per step
      (``loss``, ``grad_norm`` and ``step``).

    Raises:
      ValueError: on ``batch_size < 1``, ``num_steps < 0`` or bad data arrays.
      NonFiniteLossError: when a loss is not finite; it names the step and carries the state
        from before the failing chunk.

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
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative int, got {num_steps!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    draw0, data0 = batch_source(source, "source")
    draw1, data1 = batch_source(target, "target")

    def one(state, data):
        data0, data1 = data
        k = jax.random.fold_in(key, state.step)
        k0, k1, k_step = jax.random.split(k, 3)
        x0 = draw0(k0, batch_size, data0)
        x1 = draw1(k1, batch_size, data1)
        if x0.shape != x1.shape:
            raise ValueError(
                f"source and target batches differ in shape: {x0.shape} and {x1.shape}"
            )
        return step(state, k_step, x0, x1)

    return run_scan_chunks(
        one, state, (data0, data1), num_steps=num_steps, chunk_size=chunk_size,
        progress=progress, on_chunk=on_chunk, desc="train",
    )


def run_scan_chunks(
    one: Callable,
    state,
    data,
    *,
    num_steps: int,
    chunk_size: int = 500,
    progress: bool = True,
    on_chunk: Callable | None = None,
    desc: str = "train",
    unroll: int = 0,
):
    """The chunk driver behind :func:`fit` (and the image and reflow loops).

    ``one(state, data) -> (state, metrics)`` is one training step; it is scanned ``chunk_size``
    times per compiled call (``data`` rides along in the carry, an argument rather than a
    constant of the program). Between chunks: the non-finite check, the progress bar, the
    ``on_chunk(state, metrics)`` callback. With ``unroll = k > 0`` a chunk runs as compiled
    blocks of ``k`` fully unrolled steps instead of one rolled scan (convolutional models on
    XLA:CPU run many times slower inside a rolled loop); results do not depend on it.
    Returns ``(state, history)``.
    """

    def body(carry, _):
        state, data = carry
        new_state, metrics = one(state, data)
        return (new_state, data), dict(metrics, step=state.step)

    compiled = {}

    def run_block(state, length):
        if length not in compiled:
            compiled[length] = jax.jit(
                lambda s, d: jax.lax.scan(body, (s, d), None, length=length, unroll=bool(unroll))
            )
        (state, _), metrics = compiled[length](state, data)
        return state, jax.device_get(metrics)

    def run_chunk(state, length):
        if not unroll:
            return run_block(state, length)
        parts = []
        for start in range(0, length, unroll):
            state, m = run_block(state, min(unroll, length - start))
            parts.append(m)
        return state, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    history: dict[str, list[np.ndarray]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=desc, unit="step", dynamic_ncols=True)
    done = 0
    try:
        while done < num_steps:
            length = min(chunk_size, num_steps - done)
            new_state, metrics = run_chunk(state, length)
            metrics = jax.device_get(metrics)
            losses = np.asarray(metrics["loss"])
            bad = ~np.isfinite(losses)
            if bad.any():
                first = int(np.asarray(metrics["step"])[np.argmax(bad)])
                raise NonFiniteLossError(
                    f"non-finite loss ({losses[np.argmax(bad)]}) at step {first}; "
                    f"keeping the state from step {int(jax.device_get(state.step))}",
                    step=first,
                    state=state,
                )
            state = new_state
            for name, value in metrics.items():
                history.setdefault(name, []).append(np.asarray(value))
            done += length
            if bar is not None:
                bar.update(length)
                bar.set_postfix(loss=f"{losses.mean():.4f}")
            if on_chunk is not None:
                on_chunk(state, metrics)
    finally:
        if bar is not None:
            bar.close()
    return state, {k: np.concatenate(v) for k, v in history.items()} if history else {}
