r"""A time-conditioned multilayer perceptron (Flax NNX)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from flowjax_fm._checks import (
    check_bool,
    check_choice,
    check_int,
    check_labels,
    check_positive_int,
    fail_if,
    is_concrete,
    is_int,
)

__all__ = [
    "MLP", "time_features", "cond_features", "class_labels", "check_conditioning", "check_rngs",
    "check_sizes", "check_times", "end_time", "ACTIVATIONS",
]

ACTIVATIONS = {
    "selu": jax.nn.selu,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
}


def time_features(t: jax.Array, num_frequencies: int) -> jax.Array:
    r"""Embed times ``(B,)`` as ``(B, 1 + 2K)``: :math:`[t, \sin(\omega_k t), \cos(\omega_k t)]`.

    The frequencies :math:`\omega_k` are spread geometrically over :math:`[1, 100]`, none a
    multiple of :math:`2\pi`, and ``t`` itself is the first feature, so the embeddings of
    ``t = 0`` and ``t = 1`` always differ (a purely periodic embedding with frequencies
    :math:`2\pi k` would map both ends to the same vector).

    Args:
      t: float times of shape ``(B,)``.
      num_frequencies: ``K``, an int >= 0 (0: ``t`` alone).

    Raises:
      ValueError: ``t`` not a float array of shape ``(B,)``, or ``num_frequencies`` not an
        int >= 0.

    Examples:
      >>> import jax.numpy as jnp
      >>> e = time_features(jnp.array([0.0, 1.0]), 4)
      >>> e.shape, bool(jnp.abs(e[0] - e[1]).max() > 0.5)
      ((2, 9), True)
    """
    num_frequencies = check_int("num_frequencies", num_frequencies, 0)
    check_times(t)
    t = t[:, None]
    if num_frequencies == 0:
        return t
    freqs = jnp.geomspace(1.0, 100.0, num_frequencies, dtype=t.dtype)
    return jnp.concatenate([t, jnp.sin(freqs * t), jnp.cos(freqs * t)], axis=-1)


def check_times(t) -> None:
    """A ValueError unless ``t`` is a float array of shape ``(B,)``."""
    shape, dtype = jnp.shape(t), jnp.result_type(t)
    if len(shape) != 1 or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"t must be a float array of shape (B,), got shape {shape} and dtype {dtype}")


def end_time(model: str, two_time: bool, r, batch: int):
    """Check the end time ``r`` of a call against the kind of model; ``r`` itself or ``None``.

    A one-time model refuses ``r``; a two-time model needs it, of shape ``(batch,)``.

    Raises:
      ValueError: ``r`` given to a one-time model, missing for a two-time model, or not
        of shape ``(batch,)``.
    """
    if r is None:
        if two_time:
            raise ValueError(
                f"a two-time model needs r=... (the end time of the jump, shape ({batch},)); "
                f"this {model} was built with two_time=True"
            )
        return None
    if not two_time:
        raise ValueError(
            f"this model takes one time; build it with two_time=True to pass r (got r of "
            f"shape {jnp.shape(r)} for a one-time {model})"
        )
    if jnp.shape(r) != (batch,):
        raise ValueError(f"r must have shape ({batch},) like t, got {jnp.shape(r)}")
    return jnp.asarray(r)


def check_sizes(name: str, values, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``values`` as a tuple of ints >= 1 (Python or NumPy ints, not bools); a ValueError if not."""
    try:
        sizes = tuple(values)
    except TypeError:
        sizes = None
    if sizes is None or (not sizes and not allow_empty) or not all(is_int(v) and v >= 1 for v in sizes):
        what = "a sequence" if allow_empty else "a non-empty sequence"
        raise ValueError(f"{name} must be {what} of ints >= 1, got {values!r}")
    return tuple(int(v) for v in sizes)


def check_rngs(rngs) -> None:
    """A TypeError unless ``rngs`` is an ``nnx.Rngs``."""
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs (nnx.Rngs(0)), got {type(rngs).__name__}")


def check_conditioning(num_classes, cond_dim) -> tuple[int | None, int | None]:
    """``num_classes`` and ``cond_dim``: each None or an int >= 1, not both given."""
    if num_classes is not None and cond_dim is not None:
        raise ValueError(
            f"give num_classes (labels) or cond_dim (vectors), not both; got num_classes="
            f"{num_classes} and cond_dim={cond_dim} (one-hot the labels into the vector)"
        )
    num_classes = None if num_classes is None else check_positive_int("num_classes", num_classes)
    cond_dim = None if cond_dim is None else check_positive_int("cond_dim", cond_dim)
    return num_classes, cond_dim


def class_labels(model: str, cond, batch: int, num_classes: int):
    r"""Check the labels ``cond`` of a class-conditional model: ``(B,)`` integers in ``[0, K]``.

    Label ``K = num_classes`` is the null class. Shape and dtype are checked at trace time;
    the range eagerly when ``cond`` is concrete (a ValueError) and, when it is traced (under
    ``jit``), at run time with :func:`~flowjax_fm._checks.fail_if` (a RuntimeError), so that
    an out-of-range label never indexes the embedding table silently (JAX clamps or fills
    out-of-range gathers). The run-time check is one min / max reduction (plus one scalar
    ``psum`` under ``pmap`` / ``shard_map``, so that every device raises together instead of
    leaving the others waiting in a collective). Returns the labels (the traced ones carry the
    check: use the returned value).

    Raises:
      ValueError: float, boolean or mis-shaped labels; concrete labels outside ``[0, K]``.
      RuntimeError: traced labels outside ``[0, K]`` (when the computation runs).
    """
    shape, dtype = jnp.shape(cond), jnp.result_type(cond)
    if shape != (batch,) or not jnp.issubdtype(dtype, jnp.integer):
        hint = (
            "; a float condition vector needs a model built with cond_dim=k"
            if jnp.issubdtype(dtype, jnp.floating)
            else ""
        )
        raise ValueError(
            f"this {model} takes integer labels of shape ({batch},) as cond, got shape {shape} "
            f"and dtype {dtype} (num_classes={num_classes}: labels 0..{num_classes - 1}, and "
            f"{num_classes} for the null class{hint})"
        )
    if is_concrete(cond):
        return check_labels("cond", cond, batch=batch, num_classes=num_classes + 1)
    message = (
        f"cond must lie in [0, {num_classes + 1}) (label {num_classes} is the null class), got a "
        "label outside it"
    )
    bad = (jnp.min(cond) < 0) | (jnp.max(cond) > num_classes)
    return fail_if(cond, bad, message, throw=True)


class MLP(nnx.Module):
    r"""Time-conditioned MLP vector field :math:`v_\theta(x, t)` on flattened events.

    ``model(x, t)`` with ``x: (B, *event)``, ``t: (B,)`` returns ``(B, *event)``: the input
    is the flattened event concatenated with :func:`time_features` of ``t`` and, for a
    conditional model, an embedding of the condition:

    .. math:: h_0 = [\,x,\ \phi(t),\ e(c)\,]

    **Two times** (``two_time=True``, for few-step objectives such as MeanFlow and shortcut
    models): ``model(x, t, r=r)`` represents the average velocity over the jump from ``t``
    to ``r`` (both ``(B,)``),

    .. math::
       u_\theta(x_t, t, r) \approx \frac{1}{r - t} \int_t^r v(x_s, s)\, ds, \qquad
       x_r = x_t + (r - t)\, u_\theta(x_t, t, r),

    and the gap :math:`d = r - t` enters through the same embedding as ``t`` (the same
    frequencies):

    .. math:: h_0 = [\,x,\ \phi(t),\ \phi(r - t),\ e(c)\,]

    Embedding ``t`` and the gap rather than ``t`` and ``r`` follows MeanFlow (whose best
    input pair is :math:`(t, t - r)` with noise at ``t = 1``; we put noise at ``t = 0``, so a
    forward jump has :math:`d = r - t \ge 0`) and shortcut models (which embed the step
    size). :math:`d = 0` is an ordinary input, not a special case: at ``r = t`` the model is
    an ordinary velocity field :math:`v_\theta(x, t)`.

    * ``num_classes=K``: ``cond`` is integer labels ``(B,)`` in ``[0, K]`` and :math:`e` a
      learned embedding; label ``K`` is the null class of classifier-free guidance.
    * ``cond_dim=k``: ``cond`` is a float array ``(B, k)`` (or ``(B,)`` when ``k = 1``) and
      :math:`e(c) = [c,\ 0]` for a condition, :math:`e(\varnothing) = [0,\ 1]` for the null
      condition: the input carries the condition and a null indicator, so the first layer
      learns the projection of ``c`` and a separate null embedding (its weights on the
      indicator). A row is null when **all** its entries are NaN, which is what
      :meth:`null_cond` returns; a row with only some NaN entries is not null and propagates
      NaN.

    ``model(x, t)`` without ``cond`` on a conditional model means the null condition for the
    whole batch. A model takes labels or vectors, not both: for labels together with
    vectors, one-hot the labels into the vector.

    Args:
      dim: event size (product of the event shape), an int >= 1.
      hidden: hidden widths, a non-empty sequence of ints >= 1; torchcfm's 2D reference
        network is ``(64, 64, 64)`` with SELU.
      activation: a name in :data:`ACTIVATIONS` or a callable.
      time_frequencies: number of Fourier frequencies of the time embedding, an int >= 0
        (0: ``t`` only, as torchcfm does).
      num_classes: optional number of labels ``K`` for class conditioning (``cond=labels``),
        an int >= 1; labels are ``0..K-1`` and ``K`` is the null class.
      class_embed_dim: size of the learned label embedding, an int >= 1.
      cond_dim: optional size ``k`` of a continuous condition (``cond=c``, ``(B, k)`` float),
        an int >= 1.
      two_time: ``True`` for a two-time model ``model(x, t, r=r)`` (the average velocity
        from ``t`` to ``r``, above); ``False`` (the default) for ``model(x, t)``. Read back
        as ``model.two_time``.
      periodic: ``True`` reads ``x`` as angles through :math:`(\cos x, \sin x)` (a field on
        the flat torus, continuous across :math:`0 \equiv 2\pi`; default ``False``).
      rngs: ``nnx.Rngs`` for initialisation.

    Ints may be Python or NumPy ints; bools are refused.

    Raises:
      ValueError: at construction, a size out of its range, an unknown activation name,
        both ``num_classes`` and ``cond_dim``, or ``two_time`` not a bool; at call time,
        ``x`` not of event size ``dim``, ``t`` not ``(B,)``, ``r`` given to a one-time model,
        missing for a two-time model or not ``(B,)``, a ``cond`` that does not fit the model
        (quoting its shape and dtype; float labels point to ``cond_dim``), or concrete labels
        outside ``[0, K]``.
      TypeError: ``activation`` neither a name nor a callable, ``rngs`` not an ``nnx.Rngs``.
      RuntimeError: at run time under ``jit``, labels outside ``[0, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = MLP(2, (16, 16), rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((5, 2)), jnp.zeros(5)).shape
      (5, 2)
      >>> cmodel = MLP(2, (16,), cond_dim=3, rngs=nnx.Rngs(0))
      >>> cmodel(jnp.zeros((5, 2)), jnp.zeros(5), cond=jnp.ones((5, 3))).shape
      (5, 2)
      >>> bool(jnp.allclose(cmodel(jnp.zeros((5, 2)), jnp.zeros(5)),
      ...                   cmodel(jnp.zeros((5, 2)), jnp.zeros(5), cond=cmodel.null_cond(5))))
      True

      A two-time model, class-conditional, jumping from ``t = 0`` to ``r = 1`` in one step:

      >>> umodel = MLP(2, (16,), time_frequencies=4, num_classes=3, two_time=True,
      ...              rngs=nnx.Rngs(0))
      >>> x0, t, r = jnp.zeros((5, 2)), jnp.zeros(5), jnp.ones(5)
      >>> x1 = x0 + (r - t)[:, None] * umodel(x0, t, cond=jnp.array([0, 1, 2, 3, 3]), r=r)
      >>> umodel.two_time, x1.shape
      (True, (5, 2))
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64, 64),
        *,
        activation="selu",
        time_frequencies: int = 0,
        num_classes: int | None = None,
        class_embed_dim: int = 16,
        cond_dim: int | None = None,
        two_time: bool = False,
        periodic: bool = False,
        rngs: nnx.Rngs,
    ):
        if isinstance(activation, str):
            activation = ACTIVATIONS[check_choice("activation", activation, sorted(ACTIVATIONS))]
        elif not callable(activation):
            raise TypeError(
                f"activation must be a name in {sorted(ACTIVATIONS)} or a function, got "
                f"{type(activation).__name__}"
            )
        dim = check_positive_int("dim", dim)
        hidden = check_sizes("hidden", hidden)
        time_frequencies = check_int("time_frequencies", time_frequencies, 0)
        class_embed_dim = check_positive_int("class_embed_dim", class_embed_dim)
        num_classes, cond_dim = check_conditioning(num_classes, cond_dim)
        two_time = check_bool("two_time", two_time)
        check_rngs(rngs)
        self.dim = dim
        self.activation = activation
        self.time_frequencies = time_frequencies
        self.num_classes = num_classes
        self.cond_dim = cond_dim
        self.two_time = two_time
        self.periodic = check_bool("periodic", periodic)
        extra = (2 if two_time else 1) * (1 + 2 * time_frequencies)  # phi(t) [and phi(r - t)]
        if self.periodic:
            extra += dim  # (cos x, sin x) in place of x
        if num_classes is not None:
            self.class_embed = nnx.Embed(num_classes + 1, class_embed_dim, rngs=rngs)
            extra += class_embed_dim
        if cond_dim is not None:
            extra += cond_dim + 1  # the condition and its null indicator
        widths = [dim + extra, *hidden]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.out = nnx.Linear(widths[-1], dim, rngs=rngs)

    def null_cond(self, batch: int):
        """What "no condition" means for this model, batched: ``(batch,)`` null labels
        (``num_classes``), ``(batch, cond_dim)`` NaN (the null vector), or ``None``."""
        if self.num_classes is not None:
            return jnp.full((batch,), self.num_classes, jnp.int32)
        if self.cond_dim is not None:
            return jnp.full((batch, self.cond_dim), jnp.nan, jnp.float32)
        return None

    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None, r: jax.Array | None = None
    ) -> jax.Array:
        batch, event = x.shape[0], x.shape[1:]
        flat = x.reshape(batch, -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"MLP built for event size {self.dim}, got x of shape {x.shape}")
        if jnp.shape(t) != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {jnp.shape(t)}")
        if not jnp.issubdtype(flat.dtype, jnp.floating):
            raise ValueError(f"x must be floating point, got dtype {flat.dtype}")
        r = end_time("MLP", self.two_time, r, batch)
        t = t.astype(flat.dtype)
        coords = [jnp.cos(flat), jnp.sin(flat)] if self.periodic else [flat]
        feats = [*coords, time_features(t, self.time_frequencies)]
        if r is not None:
            feats.append(time_features(r.astype(flat.dtype) - t, self.time_frequencies))
        if self.num_classes is not None:
            if cond is None:
                labels = self.null_cond(batch)
            else:
                labels = class_labels("MLP", cond, batch, self.num_classes)
            feats.append(self.class_embed(labels).astype(flat.dtype))
        elif self.cond_dim is not None:
            feats.append(cond_features(cond, batch, self.cond_dim, flat.dtype))
        elif cond is not None:
            raise ValueError(
                "this MLP has no conditioning (num_classes=None, cond_dim=None) but got cond"
            )
        h = jnp.concatenate(feats, axis=-1)
        for layer in self.layers:
            h = self.activation(layer(h))
        return self.out(h).reshape(batch, *event)


def cond_features(cond, batch: int, cond_dim: int, dtype) -> jax.Array:
    r"""A continuous condition ``(B, k)`` and its null indicator as ``(B, k + 1)`` features.

    .. math:: f(c) = [c, 0], \qquad f(\varnothing) = [0, 1]

    A row is null when all its entries are NaN (see :meth:`MLP.null_cond`), or every row when
    ``cond`` is ``None``. NaN is replaced by 0 *before* any arithmetic, so no NaN reaches the
    network or its gradients.

    Examples:
      >>> import jax.numpy as jnp
      >>> cond_features(jnp.array([[2.0], [jnp.nan]]), 2, 1, jnp.float32).tolist()
      [[2.0, 0.0], [0.0, 1.0]]
    """
    if cond is None:
        return jnp.concatenate([jnp.zeros((batch, cond_dim), dtype), jnp.ones((batch, 1), dtype)], -1)
    shape, kind = jnp.shape(cond), jnp.result_type(cond)
    if cond_dim == 1 and shape == (batch,):
        cond = cond[:, None]
        shape = (batch, 1)
    if shape != (batch, cond_dim) or not jnp.issubdtype(kind, jnp.floating):
        raise ValueError(
            f"cond must be a float array of shape ({batch}, {cond_dim}), got shape {shape} "
            f"and dtype {kind}"
        )
    null = jnp.isnan(cond).all(axis=-1, keepdims=True)
    value = jnp.where(null, 0.0, cond).astype(dtype)
    return jnp.concatenate([value, null.astype(dtype)], axis=-1)
