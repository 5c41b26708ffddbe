r"""What a training step reads: one batch abstraction for samplers, arrays in epochs and pairs.

A :class:`BatchPlan` is static (hashable: it is part of what a compiled chunk depends on);
the arrays it reads are arguments of the compiled chunk, never constants baked into it.
Step :math:`s` draws its batch from ``fold_in(key, s)`` and, for arrays, from the position
:math:`sB` in an endless stream of epochs, epoch :math:`e` being the permutation
``permutation(fold_in(k_epochs, e), N)``: every row exactly once per epoch, and the batch of
step :math:`s` depends only on the key and :math:`s` (a resumed run continues exactly).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_bool, check_choice, check_positive_int

__all__ = ["Batch", "BatchPlan", "make_plan", "normal_source"]


class Batch(NamedTuple):
    """One training batch: source rows, data rows and the data rows' conditions (or ``None``)."""

    x0: jax.Array
    x1: jax.Array
    cond: Any = None


def normal_source(key: jax.Array, like: jax.Array) -> jax.Array:
    """Standard normal noise of ``like``'s shape and dtype (the source when none is given)."""
    return jax.random.normal(key, like.shape, like.dtype)


def _check_rows(name: str, x, tokens: bool = False) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be points shaped (N, *event) with N > 0, got {x.shape}")
    if tokens:
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"{name} must be integer tokens for a discrete objective, got dtype {x.dtype}")
    elif not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    return x


def _check_cond(name: str, cond, n: int):
    cond = jax.tree.map(jnp.asarray, cond)
    leaves = jax.tree.leaves(cond)
    if not leaves:
        raise ValueError(f"{name}: the condition pytree has no arrays")
    for leaf in leaves:
        if leaf.ndim < 1 or leaf.shape[0] != n:
            raise ValueError(
                f"{name}: every condition array needs the data's leading size {n}, got shape "
                f"{leaf.shape}"
            )
    return cond


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a step's batch is drawn (static; see :func:`make_plan`).

    ``source`` / ``target`` are ``"sampler"``, ``"array"`` or (source only) ``"normal"``;
    ``paired``: source and target arrays share their row indices; ``transform``: optional
    ``transform(key, batch) -> batch`` applied last (augmentation, dequantisation).

    Raises:
      ValueError: ``batch_size`` not an int ``>= 1``, an unknown ``source`` / ``target``
        kind, a sampler kind without its function, or ``paired`` not a bool.
    """

    batch_size: int
    source: str
    target: str
    source_fn: Callable | None = None
    target_fn: Callable | None = None
    paired: bool = False
    transform: Callable | None = None

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        check_choice("source", self.source, ("sampler", "array", "normal"))
        check_choice("target", self.target, ("sampler", "array"))
        check_bool("paired", self.paired)
        for side, kind, fn in (("source", self.source, self.source_fn),
                               ("target", self.target, self.target_fn)):
            if kind == "sampler" and not callable(fn):
                raise TypeError(f"a {side} sampler needs {side}_fn, a function (key, n) -> x")
        if self.transform is not None and not callable(self.transform):
            raise TypeError(
                f"transform must be None or a function (key, batch) -> batch, got {self.transform!r}"
            )

    @property
    def uses_epochs(self) -> bool:
        return self.source == "array" or self.target == "array"

    # -- epoch bookkeeping ----------------------------------------------------------------
    def epoch_sizes(self, data) -> tuple[int, ...]:
        """Row counts of the arrays visited in epochs (target first, then an unpaired source)."""
        sizes = []
        if self.target == "array":
            sizes.append(int(data["target"][0].shape[0]))
        if self.source == "array" and not self.paired:
            sizes.append(int(data["source"].shape[0]))
        return tuple(sizes)

    def start_position(self, step: int, data):
        """``(epoch, offset)`` per epoch stream at the first example of ``step`` (exact ints)."""
        return tuple(divmod(step * self.batch_size, n) for n in self.epoch_sizes(data))

    def draw(self, key, step, streams, data) -> tuple[Batch, Any, Any]:
        """The batch of ``step`` (traced), the advanced epoch streams, and the epoch index."""
        b = self.batch_size
        k0, k1, _ = jax.random.split(jax.random.fold_in(key, step), 3)
        k_epochs = jax.random.split(jax.random.fold_in(key, 2**31 - 1), 2)
        new_streams = []
        stream_iter = iter(streams)
        epoch = None

        def visit(k_stream, n):
            nonlocal epoch
            e, r, perm = next(stream_iter)
            idx, state = _epoch_indices(k_stream, e, r, perm, n, b)
            new_streams.append(state)
            if epoch is None:
                epoch = e
            return idx

        cond = None
        if self.target == "sampler":
            out = self.target_fn(k1, b)
            x1, cond = out if isinstance(out, tuple) else (out, None)
        else:
            x, c = data["target"]
            idx1 = visit(k_epochs[0], x.shape[0])
            x1 = jnp.take(x, idx1, axis=0)
            cond = None if c is None else jax.tree.map(lambda a: jnp.take(a, idx1, axis=0), c)
        if self.paired:
            x0 = jnp.take(data["source"], idx1, axis=0)
        elif self.source == "sampler":
            x0 = self.source_fn(k0, b)
        elif self.source == "array":
            x0 = jnp.take(data["source"], visit(k_epochs[1], data["source"].shape[0]), axis=0)
        else:
            x0 = normal_source(k0, x1)
        x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
        if x0.shape != x1.shape:
            raise ValueError(
                f"source and target batches differ in shape: {x0.shape} and {x1.shape}"
            )
        batch = Batch(x0, x1, cond)
        if self.transform is not None:
            batch = self.transform(jax.random.fold_in(jax.random.fold_in(key, step), 3), batch)
            if not isinstance(batch, Batch):
                batch = Batch(*batch)
        return batch, tuple(new_streams), epoch


def _permutation(key, e, n):
    return jax.random.permutation(jax.random.fold_in(key, e), n).astype(jnp.int32)


def _epoch_indices(key, e, r, perm, n: int, b: int):
    """Rows ``r .. r + b - 1`` of the stream of epochs starting at epoch ``e``.

    ``perm`` is epoch ``e``'s permutation (carried between steps, so a permutation is drawn
    once per epoch, not once per step). Returns the indices and the stream state after them.
    """
    if b <= n:
        spill = r + b > n
        nxt = jax.lax.cond(spill, lambda: _permutation(key, e + 1, n), lambda: perm)
        idx = jax.lax.dynamic_slice_in_dim(jnp.concatenate([perm, nxt]), r, b)
        r_new = r + b
        crossed = r_new >= n
        e_new = jnp.where(crossed, e + 1, e)
        r_new = jnp.where(crossed, r_new - n, r_new)
        perm_new = jnp.where(crossed, nxt, perm)
        return idx, (e_new, r_new, perm_new)
    # a batch larger than the data: it spans several epochs; draw each of them
    m = b // n + 2
    perms = jnp.concatenate([_permutation(key, e + i, n) for i in range(m)])
    idx = jax.lax.dynamic_slice_in_dim(perms, r, b)
    total = r + b
    e_new, r_new = e + total // n, total % n
    return idx, (e_new, r_new, _permutation(key, e_new, n))


def initial_streams(plan: BatchPlan, key, step: int, data):
    """Epoch stream states ``(epoch, offset, permutation)`` at the start of ``step``."""
    k_epochs = jax.random.split(jax.random.fold_in(key, 2**31 - 1), 2)
    keys = []
    if plan.target == "array":
        keys.append(k_epochs[0])
    if plan.source == "array" and not plan.paired:
        keys.append(k_epochs[1])
    streams = []
    for k, n, (e, r) in zip(keys, plan.epoch_sizes(data), plan.start_position(step, data),
                            strict=True):
        if e >= 2**31 - 2:
            raise ValueError(f"epoch {e} does not fit the int32 epoch counter")
        e = jnp.asarray(e, jnp.int32)
        streams.append((e, jnp.asarray(r, jnp.int32), _permutation(k, e, n)))
    return tuple(streams)


def make_plan(source, target, *, batch_size: int, paired: bool = False, transform=None,
              tokens: bool = False):
    """``(plan, data)`` for :func:`~flowjax_fm.training.fit`'s ``source`` and ``target``.

    ``target``: a sampler ``(key, n) -> x`` or ``(key, n) -> (x, cond)``, an array ``x``
    ``(N, *event)``, or a tuple ``(x, cond)`` of arrays (``cond`` any pytree of arrays with
    leading size ``N``). ``source``: a sampler, an array, or ``None`` for standard normal
    noise shaped like the data. ``paired=True``: ``source`` and ``target`` are arrays of
    equal length whose rows go together (reflow pairs), visited with the same indices.
    ``tokens=True`` (a discrete objective): arrays hold integer tokens instead of floats.

    Raises:
      ValueError: arrays that are not ``(N, *event)`` floating point, conditions of another
        length, ``paired`` not a bool or without two arrays of one length, a ``transform``
        that is not callable, or ``batch_size`` not an int ``>= 1``.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    paired = check_bool("paired", paired)
    data: dict[str, Any] = {"source": None, "target": None}
    if callable(target):
        t_kind, t_fn = "sampler", target
    else:
        if isinstance(target, tuple | list):
            if len(target) != 2:
                raise ValueError(
                    f"target as a tuple must be (x, cond), got a tuple of {len(target)} items"
                )
            x, c = _check_rows("target", target[0], tokens), target[1]
            c = None if c is None else _check_cond("target", c, x.shape[0])
        else:
            x, c = _check_rows("target", target, tokens), None
        t_kind, t_fn = "array", None
        data["target"] = (x, c)
    if source is None:
        s_kind, s_fn = "normal", None
    elif callable(source):
        s_kind, s_fn = "sampler", source
    else:
        s_kind, s_fn = "array", None
        data["source"] = _check_rows("source", source, tokens)
    if paired:
        if s_kind != "array" or t_kind != "array":
            raise ValueError("paired=True needs source and target arrays (rows that go together)")
        n0, n1 = data["source"].shape[0], data["target"][0].shape[0]
        if n0 != n1:
            raise ValueError(f"paired arrays must have the same number of rows, got {n0} and {n1}")
    if transform is not None and not callable(transform):
        raise ValueError(f"transform must be a function (key, batch) -> batch, got {transform!r}")
    plan = BatchPlan(batch_size, s_kind, t_kind, s_fn, t_fn, bool(paired), transform)
    return plan, data


def host_array(x) -> np.ndarray:
    """``x`` on the host as a NumPy array."""
    return np.asarray(jax.device_get(x))
