r"""Rectified flow: regenerate (noise, sample) pairs with a trained flow, retrain on them, distill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowjax_fm._checks import (
    as_floating,
    check_bool,
    check_finite,
    check_int,
    check_positive_int,
    is_concrete,
)
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings import IndependentCoupling
from flowjax_fm.paths import CondOTPath
from flowjax_fm.sampling import sample
from flowjax_fm.time_sampling import AbstractTime, UniformTime
from flowjax_fm.time_sampling._samplers import check_draw
from flowjax_fm.training import TrainState, fit, init_state, make_train_step

__all__ = ["GridTime", "generate_pairs", "paired_sampler", "fit_pairs", "reflow", "distill"]


@pytree_dataclass
class GridTime(AbstractTime):
    r"""Times on the grid of ``k`` equal Euler steps: :math:`t \sim U\{0, \tfrac1k, \dots, \tfrac{k-1}k\}`.

    Training the straight-path loss only at these times teaches a field the velocity that ``k``
    Euler steps read, which is what :func:`distill` needs.

    Args:
      k: the number of grid points (Euler steps), an int >= 1 (Python or NumPy; static).

    Raises:
      ValueError: ``k`` not an int >= 1; at a draw, ``n`` not an int >= 1 or ``dtype`` not
        floating.

    Examples:
      >>> import jax
      >>> sorted(set(GridTime(4)(jax.random.key(0), 200).tolist()))
      [0.0, 0.25, 0.5, 0.75]
    """

    k: int = static_field(default=1)

    def __post_init__(self):
        object.__setattr__(self, "k", check_positive_int("k", self.k))

    def __call__(self, key, n, dtype=jnp.float32):
        n, dtype = check_draw(n, dtype)
        return jax.random.randint(key, (n,), 0, self.k).astype(dtype) / self.k


def _check_pairs(x0, x1):
    """Two float arrays of one shape ``(N, *event)``, ``N >= 1``, finite when concrete."""
    if not hasattr(x0, "shape") or not hasattr(x1, "shape"):
        raise ValueError("x0 and x1 must be arrays shaped (N, *event)")
    if x0.shape != x1.shape or x0.ndim < 2 or x0.shape[0] < 1:
        raise ValueError(
            f"pairs must be two arrays of the same shape (N, *event) with N >= 1, got "
            f"{tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if not (jnp.issubdtype(x0.dtype, jnp.floating) and jnp.issubdtype(x1.dtype, jnp.floating)):
        raise ValueError(f"pairs must be floating point, got {x0.dtype} and {x1.dtype}")
    for name, x in (("x0", x0), ("x1", x1)):
        # one reduction on the device; the detailed message (a host copy) only on failure
        if is_concrete(x) and not bool(jnp.isfinite(x).all()):
            check_finite(name, x)


def _check_training(num_steps, batch_size, chunk_size, progress, optimizer=None, time_sampler=None):
    check_int("num_steps", num_steps, 0)
    check_positive_int("batch_size", batch_size)
    check_positive_int("chunk_size", chunk_size)
    check_bool("progress", progress)
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be None or an optax GradientTransformation (optax.adam(1e-3)), got "
            f"{type(optimizer).__name__}"
        )
    if time_sampler is not None and not isinstance(time_sampler, AbstractTime):
        raise TypeError(
            "time_sampler must be an instance of fm.time_sampling.AbstractTime (e.g. "
            f"fm.time_sampling.UniformTime()), got {type(time_sampler).__name__}"
        )


def generate_pairs(
    vector_field: Callable[..., jax.Array],
    key: jax.Array,
    source,
    n: int,
    *,
    batch_size: int = 1024,
    solver: str | diffrax.AbstractSolver = "dopri5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int | None = 4096,
) -> tuple[jax.Array, jax.Array]:
    r"""Pairs :math:`(x_0, \Phi_{0\to1}(x_0))` of source points and their images under the flow.

    .. math:: x_0^{(i)} \sim p_0,\qquad x_1^{(i)} = x_0^{(i)} + \int_0^1 v(x_t^{(i)}, t)\, dt

    The coupling of a trained flow, made explicit: rectified flow retrains on it
    (:func:`reflow`) and distillation regresses on it (:func:`distill`). Generated in batches of
    ``batch_size`` (every batch the same shape, so the solve compiles once; the last batch is
    truncated). The pairs stay on the device.

    Args:
      vector_field: ``v(x, t)``, ``x: (B, *event)``, ``t: (B,)``.
      key: a ``jax.random.key``; batch ``j`` draws from ``fold_in(key, j)``.
      source: a sampler ``(key, n) -> (n, *event)``, or an array of source points (``n`` rows
        are drawn without replacement).
      n: number of pairs, an int >= 1.
      batch_size: points per ODE solve, an int >= 1.
      solver, num_steps, rtol, atol, max_steps: as :func:`flowjax_fm.sampling.sample`
        (``num_steps``: None or an int >= 1; ``max_steps``: None or an int >= 1).

    Ints may be Python or NumPy ints; bools are refused.

    Returns:
      ``(x0, x1)``, each ``(n, *event)``.

    Raises:
      TypeError: ``vector_field`` not a function.
      ValueError: bad ``n`` / ``batch_size`` / ``num_steps`` / ``max_steps``, an array source
        that is not floating or has fewer than ``n`` rows, or as
        :func:`~flowjax_fm.sampling.sample`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> src = lambda k, n: jax.random.normal(k, (n, 2))
      >>> x0, x1 = generate_pairs(lambda x, t: jnp.ones_like(x), jax.random.key(0), src, 5,
      ...                         batch_size=4)
      >>> x0.shape, bool(jnp.allclose(x1, x0 + 1.0, atol=1e-5))
      ((5, 2), True)
    """
    if not callable(vector_field):
        raise TypeError(f"vector_field must be a function v(x, t), got {type(vector_field).__name__}")
    n = check_positive_int("n", n)
    batch_size = min(check_positive_int("batch_size", batch_size), n)
    if num_steps is not None:
        num_steps = check_positive_int("num_steps", num_steps)
    if max_steps is not None:
        max_steps = check_positive_int("max_steps", max_steps)
    num_batches = -(-n // batch_size)
    if callable(source):
        batch = lambda j: jnp.asarray(source(jax.random.fold_in(key, j), batch_size))
    else:
        data = as_floating("source", source)
        if data.ndim < 2 or data.shape[0] < n:
            raise ValueError(
                f"an array source needs at least n={n} rows (N, *event), got {tuple(data.shape)}"
            )
        data = data[jax.random.permutation(key, data.shape[0])[:n]]
        data = jnp.concatenate([data, data[: num_batches * batch_size - n]])  # pad the last batch
        batch = lambda j: data[j * batch_size : (j + 1) * batch_size]
    xs0, xs1 = [], []
    for j in range(num_batches):
        x0 = batch(j)
        res = sample(vector_field, x0, solver=solver, num_steps=num_steps, rtol=rtol, atol=atol,
                     max_steps=max_steps)
        xs0.append(x0)
        xs1.append(res.x)
    return jnp.concatenate(xs0)[:n], jnp.concatenate(xs1)[:n]


def paired_sampler(x0: jax.Array, x1: jax.Array) -> Callable[[jax.Array, int], tuple]:
    r"""A sampler ``(key, n) -> (x0[idx], x1[idx])`` that keeps the pairs together.

    .. math:: i_1, \dots, i_n \sim U\{0, \dots, N-1\},\quad
              \text{batch} = \{(x_0^{(i_j)}, x_1^{(i_j)})\}_j

    Drawing the *same* indices for both ends is the point: independent draws (as
    :func:`flowjax_fm.training.fit` makes for a source and a target) would throw the coupling
    away.

    Raises:
      ValueError: ``x0`` / ``x1`` not float arrays of one shape ``(N, *event)`` or holding
        NaN / inf; at a draw, ``n`` not an int >= 1.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> a = jnp.arange(10.0)[:, None]
      >>> b0, b1 = paired_sampler(a, 2 * a)(jax.random.key(0), 4)
      >>> bool(jnp.all(b1 == 2 * b0))
      True
    """
    _check_pairs(x0, x1)

    def draw(key, n):
        n = check_positive_int("n", n)
        idx = jax.random.randint(key, (n,), 0, x0.shape[0])
        return jnp.take(x0, idx, axis=0), jnp.take(x1, idx, axis=0)

    return draw


def fit_pairs(
    step: Callable,
    state: TrainState,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    num_steps: int,
    batch_size: int,
    chunk_size: int = 500,
    progress: bool = False,
) -> tuple[TrainState, dict[str, np.ndarray]]:
    r"""Train ``step`` on fixed pairs: chunks of steps in one compiled ``lax.scan``.

    :func:`flowjax_fm.training.fit` with ``paired=True``: the pairs are visited in epochs
    (every pair once per epoch; the same indices for both ends) and step :math:`s` calls
    ``step(state, k_step, x0[idx], x1[idx])``. With an identity coupling
    (:class:`~flowjax_fm.couplings.IndependentCoupling`) the step trains on exactly these pairs.
    The pairs are arguments of the compiled chunk, not constants baked into it.

    Args:
      step: a train step from :func:`flowjax_fm.training.make_train_step` (not jitted).
      state: the train state to start from; key: a ``jax.random.key``.
      x0, x1: paired float arrays ``(N, *event)``, finite.
      num_steps: number of steps, an int >= 0; batch_size: pairs per step, an int >= 1.
      chunk_size: steps per compiled chunk, an int >= 1; progress: show a tqdm bar (a bool).

    Returns:
      ``(state, history)``, ``history`` a dict of per-step numpy arrays (``loss``,
      ``grad_norm``, ``step``).

    Raises:
      TypeError: ``step`` not a function.
      ValueError: bad pairs (shapes, dtype, NaN / inf) or sizes.
      flowjax_fm.training.NonFiniteLossError: on a non-finite loss.
    """
    if not callable(step):
        raise TypeError(f"step must be a function (state, key, x0, x1); got {type(step).__name__}")
    _check_pairs(x0, x1)
    _check_training(num_steps, batch_size, chunk_size, progress)
    return fit(step, state, key, x0, x1, paired=True, num_steps=num_steps,
               batch_size=batch_size, chunk_size=chunk_size, progress=progress, desc="reflow")


def _start(model, optimizer, params):
    return init_state(model if params is None else params, optimizer)


def _train_on_pairs(model, key, x0, x1, time_sampler, *, num_steps, batch_size, optimizer,
                    params, ema_decay, chunk_size, progress):
    _check_pairs(x0, x1)
    _check_training(num_steps, batch_size, chunk_size, progress, optimizer, time_sampler)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    step = make_train_step(
        model, optimizer=optimizer, path=CondOTPath(sigma_min=0.0),
        coupling=IndependentCoupling(), time_sampler=time_sampler, ema_decay=ema_decay,
    )
    return fit_pairs(step, _start(model, optimizer, params), key, x0, x1, num_steps=num_steps,
                     batch_size=batch_size, chunk_size=chunk_size, progress=progress)


def reflow(
    model,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    num_steps: int,
    batch_size: int = 256,
    optimizer: optax.GradientTransformation | None = None,
    params: Any = None,
    time_sampler: AbstractTime = UniformTime(),
    ema_decay: float | None = None,
    chunk_size: int = 500,
    progress: bool = False,
) -> tuple[TrainState, dict[str, np.ndarray]]:
    r"""One rectification: fit a flow to the straight interpolation of fixed pairs.

    With pairs :math:`(x_0, x_1 = \Phi^{k}(x_0))` from the k-th flow (:func:`generate_pairs`),
    the (k+1)-rectified flow minimises

    .. math:: \mathbb{E}_{i,\, t}\,\big\lVert v_\theta\big((1-t)x_0^{(i)} + t x_1^{(i)}, t\big)
              - (x_1^{(i)} - x_0^{(i)}) \big\rVert^2

    (the straight path, ``CondOTPath(sigma_min=0)``, with the identity pairing over the fixed
    pairs). The new flow transports :math:`p_0` to the same marginal as the old one, with
    trajectories that cross less, so it is straighter and Euler steps are more accurate.

    Args:
      model: an NNX or equinox model (its own parameters start training unless ``params``
        is given), or a plain ``apply(params, x, t, cond=None)`` (then ``params`` is needed).
      key: a ``jax.random.key``.
      x0, x1: paired float arrays ``(N, *event)``, finite.
      num_steps: training steps, an int >= 0; batch_size: pairs per step, an int >= 1.
      optimizer: an optax transformation (default ``adam(1e-3)``).
      params: parameters to start from, e.g. the previous flow's (warm start; the usual
        choice).
      time_sampler: training-time distribution, an
        :class:`~flowjax_fm.time_sampling.AbstractTime` (default uniform).
      ema_decay: optional parameter EMA kept in ``state.ema``, in ``[0, 1]``.
      chunk_size, progress: as :func:`fit_pairs`.

    Returns:
      ``(state, history)``; the new field is
      ``fm.training.make_vector_field(model, state.params)``.

    Raises:
      TypeError: ``optimizer`` or ``time_sampler`` of the wrong kind, or a model
        :func:`~flowjax_fm.training.make_train_step` refuses.
      ValueError: bad pairs (shapes, dtype, NaN / inf), sizes or ``ema_decay``.
      flowjax_fm.training.NonFiniteLossError: on a non-finite loss.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> x0 = jax.random.normal(jax.random.key(0), (64, 2))
      >>> state, hist = reflow(fm.models.MLP(2, (16,), rngs=nnx.Rngs(0)), jax.random.key(1),
      ...                      x0, x0 + 2.0, num_steps=10, batch_size=16)
      >>> int(state.step), hist["loss"].shape
      (10, (10,))

    References:
      Liu et al. 2023, Flow Straight and Fast: Learning to Generate and Transfer Data with
      Rectified Flow.
    """
    return _train_on_pairs(model, key, x0, x1, time_sampler, num_steps=num_steps,
                           batch_size=batch_size, optimizer=optimizer, params=params,
                           ema_decay=ema_decay, chunk_size=chunk_size, progress=progress)


def distill(
    model,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    euler_steps: int = 1,
    num_steps: int,
    batch_size: int = 256,
    optimizer: optax.GradientTransformation | None = None,
    params: Any = None,
    ema_decay: float | None = None,
    chunk_size: int = 500,
    progress: bool = False,
) -> tuple[TrainState, dict[str, np.ndarray]]:
    r"""Distill pairs into a field that ``euler_steps`` Euler steps follow exactly.

    With :math:`k` = ``euler_steps`` and grid times :math:`t_j = j / k`, minimise

    .. math:: \mathbb{E}_{i,\, j}\,\big\lVert v_\theta\big((1-t_j)x_0^{(i)} + t_j x_1^{(i)},
              t_j\big) - (x_1^{(i)} - x_0^{(i)}) \big\rVert^2 .

    At the optimum, Euler steps of size :math:`1/k` from :math:`x_0` stay on the straight
    segment to :math:`x_1`, so :math:`k` evaluations reproduce the pairs (``k = 1``: a
    one-step generator :math:`x_1 = x_0 + v_\theta(x_0, 0)`). Works best on pairs from a
    rectified (already straight) flow, whose pairs are nearly a deterministic function of
    :math:`x_0` at every grid point.

    Args:
      model, key, x0, x1, num_steps, batch_size, optimizer, params, ema_decay, chunk_size,
        progress: as :func:`reflow`.
      euler_steps: number of Euler steps ``k`` the distilled field is sampled with, an int
        >= 1.

    Returns:
      ``(state, history)``; sample with
      ``fm.sampling.sample(field, x0, solver="euler", num_steps=euler_steps)``.

    Raises:
      TypeError, ValueError: as :func:`reflow`; ValueError for ``euler_steps`` not an int >= 1.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> x0 = jax.random.normal(jax.random.key(0), (64, 2))
      >>> state, _ = distill(fm.models.MLP(2, (16,), rngs=nnx.Rngs(0)), jax.random.key(1),
      ...                    x0, x0 + 2.0, euler_steps=2, num_steps=10, batch_size=16)
      >>> int(state.step)
      10
    """
    euler_steps = check_positive_int("euler_steps", euler_steps)
    return _train_on_pairs(model, key, x0, x1, GridTime(euler_steps), num_steps=num_steps,
                           batch_size=batch_size, optimizer=optimizer, params=params,
                           ema_decay=ema_decay, chunk_size=chunk_size, progress=progress)
