"""Shared checks of user input: one rule per kind of value, one wording of the error.

Every public constructor and function of flowjax_fm checks its arguments through these
helpers, so that one kind of value follows one rule everywhere:

* **integers** (:func:`check_int`): Python or NumPy integers; ``bool`` is refused.
* **reals** (:func:`check_real`): Python, NumPy or concrete JAX numbers (or arrays of them,
  for a swept leaf), finite, inside a stated interval. A *traced* value (a leaf swept under
  ``vmap``, or built inside ``jit``) cannot be read, so it passes; the run-time checks of
  the solves (:func:`fail_if`) are what catch its consequences.
* **choices** (:func:`check_choice`), **flags** (:func:`check_bool`).
* **arrays** (:func:`as_floating`): the dtype policy. A NumPy ``float64`` array with x64 off
  is cast as JAX would cast it (to ``float32``); a JAX floating dtype (``bfloat16``,
  ``float16``) is kept, so the result of a function keeps its input's floating dtype.
  :func:`check_batched` quotes shapes; :func:`check_labels` checks integer labels
  (dtype, shape, range); :func:`check_finite` refuses NaN / inf in concrete data.
* **run-time failures** (:func:`fail_if`): the one policy of numerical failure, ``throw``:
  raise (through :func:`equinox.error_if`, the same inside and outside ``jit``) or return
  the value untouched so that the caller reports the failure in its result.

Errors are ``ValueError`` (a bad value) or ``TypeError`` (a value of the wrong kind where
the kind, not the value, is what is wrong), with a message that names the argument, says
what is accepted and quotes what was given.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_floating",
    "check_batched",
    "check_bool",
    "check_choice",
    "check_finite",
    "check_int",
    "check_labels",
    "check_positive_int",
    "check_real",
    "fail_if",
    "first_line",
    "interval",
    "is_concrete",
    "is_int",
    "is_traced",
    "mapped_axes",
]


# -- integers ----------------------------------------------------------------------------
def is_int(value) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral | np.integer) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``; a ValueError naming
    ``name`` if not.

    Examples:
      >>> check_int("num_steps", 0, 0)
      0
      >>> import numpy as np
      >>> check_int("batch_size", np.int64(8), 1)
      8
      >>> check_int("batch_size", True, 1)
      Traceback (most recent call last):
      ...
      ValueError: batch_size must be an int >= 1, got True
    """
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value) -> int:
    """:func:`check_int` with ``minimum = 1``."""
    return check_int(name, value, 1)


# -- reals -------------------------------------------------------------------------------
def is_traced(value) -> bool:
    """Whether ``value`` (or a leaf of it) is a JAX tracer, whose value cannot be read."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def is_concrete(value) -> bool:
    """Whether ``value`` is a number or an array whose values can be read now."""
    return not is_traced(value)


def interval(low=None, high=None, *, low_open: bool = False, high_open: bool = False) -> str:
    """The interval ``[low, high)`` written as in the error messages.

    Examples:
      >>> interval(0, None, low_open=True), interval(0, 1), interval(None, None)
      ('(0, inf)', '[0, 1]', '(-inf, inf)')
    """
    lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
    return f"{lo}, {hi}"


def _real_values(name: str, value) -> np.ndarray:
    if isinstance(value, bool | np.bool_ | str | bytes | complex) or (
        hasattr(value, "dtype")
        and not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer))
    ):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None


def check_real(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    none_ok: bool = False,
    finite: bool = True,
):
    """Check that ``value`` is a finite real number (or array of them) in an interval.

    Returns ``value`` unchanged (a leaf stays the leaf the user gave). ``None`` passes when
    ``none_ok``; a traced value passes unchecked (see the module docstring).

    Raises:
      ValueError: naming ``name``, the accepted interval and the value.

    Examples:
      >>> check_real("sigma", 0.1, 0.0)
      0.1
      >>> check_real("epsilon", 0.0, 0.0, low_open=True)
      Traceback (most recent call last):
      ...
      ValueError: epsilon must be a finite number in (0, inf), got 0.0
      >>> check_real("decay", float("nan"), 0.0, 1.0)
      Traceback (most recent call last):
      ...
      ValueError: decay must be a finite number in [0, 1], got nan
    """
    if value is None:
        if none_ok:
            return value
        span = interval(low, high, low_open=low_open, high_open=high_open)
        raise ValueError(f"{name} must be a number in {span}, got None")
    if is_traced(value):
        return value
    v = _real_values(name, value)
    ok = ~np.isnan(v)
    if finite:
        ok &= np.isfinite(v)
    if low is not None:
        ok &= (v > low) if low_open else (v >= low)
    if high is not None:
        ok &= (v < high) if high_open else (v <= high)
    if not np.all(ok):
        span = interval(low, high, low_open=low_open, high_open=high_open)
        what = "a finite number" if finite else "a number"
        shown = repr(value) if v.ndim == 0 else f"an array containing {float(v[~ok].ravel()[0])}"
        raise ValueError(f"{name} must be {what} in {span}, got {shown}")
    return value


# -- choices and flags -------------------------------------------------------------------
def check_choice(name: str, value, choices) -> object:
    """``value`` if it is one of ``choices``; a ValueError listing them if not.

    Examples:
      >>> check_choice("sampling", "rows", ("pairs", "rows"))
      'rows'
      >>> check_choice("sampling", "row", ("pairs", "rows"))
      Traceback (most recent call last):
      ...
      ValueError: unknown sampling 'row'; choose one of 'pairs', 'rows'
    """
    try:
        ok = value in tuple(choices)
    except TypeError:  # an unhashable value compared against strings
        ok = False
    if not ok or isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; choose one of {listed}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` as a ``bool`` if it is a Python or NumPy bool; a ValueError if not.

    Examples:
      >>> check_bool("throw", 1)
      Traceback (most recent call last):
      ...
      ValueError: throw must be True or False, got 1
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


# -- arrays ------------------------------------------------------------------------------
def _shape(x) -> tuple:
    return tuple(np.shape(x))


def as_floating(name: str, x) -> jax.Array:
    """``x`` as a JAX floating array, by the package's dtype policy.

    A JAX array (or tracer) keeps its dtype; anything else goes through ``jnp.asarray``, so
    a NumPy ``float64`` array becomes ``float32`` when x64 is off, exactly as JAX casts it.
    Integer, boolean and complex inputs are refused (a flow is a real, continuous state).

    Examples:
      >>> import numpy as np, jax.numpy as jnp
      >>> as_floating("x0", np.zeros((2, 3))).dtype
      dtype('float32')
      >>> as_floating("x0", jnp.zeros(2, jnp.bfloat16)).dtype
      dtype(bfloat16)
      >>> as_floating("x0", np.zeros(2, np.int32))
      Traceback (most recent call last):
      ...
      ValueError: x0 must be a floating-point array, got dtype int32 and shape (2,)
    """
    if isinstance(x, jax.Array | jax.core.Tracer):
        arr = x
    else:
        try:
            arr = jnp.asarray(x)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be an array of floats, got {type(x).__name__}: {err}") from None
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating-point array, got dtype {arr.dtype} and shape {_shape(arr)}"
        )
    return arr


def check_batched(name: str, x, *, min_ndim: int = 2, what: str = "(B, *event)") -> tuple:
    """The shape of ``x`` if it has at least ``min_ndim`` axes and a non-empty batch.

    Examples:
      >>> check_batched("x0", np.zeros(3))
      Traceback (most recent call last):
      ...
      ValueError: x0 must be batched with shape (B, *event), at least 2D; got shape (3,)
    """
    shape = _shape(x)
    if len(shape) < min_ndim:
        raise ValueError(f"{name} must be batched with shape {what}, at least {min_ndim}D; got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: shape {shape}")
    return shape


def check_labels(name: str, labels, *, batch: int | None = None, num_classes: int | None = None):
    """Check integer class labels: integer dtype, shape ``(batch,)``, values in ``[0, num_classes)``.

    Shape and dtype are checked at trace time; the range only when ``labels`` is concrete.
    Returns ``labels`` unchanged.

    Examples:
      >>> import numpy as np
      >>> check_labels("labels", np.array([0, 3]), num_classes=3)
      Traceback (most recent call last):
      ...
      ValueError: labels must lie in [0, 3), got values from 0 to 3
    """
    dtype = jnp.result_type(labels)
    shape = _shape(labels)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            f"{name} must be integer class labels, got dtype {dtype} and shape {shape}"
            " (a float condition vector goes through cond_dim / cond_weight instead)"
        )
    expected = "(B,)" if batch is None else f"({batch},)"
    if len(shape) != 1 or (batch is not None and shape[0] != batch):
        raise ValueError(f"{name} must have shape {expected}, got {shape}")
    if num_classes is not None and is_concrete(labels) and shape[0]:
        v = np.asarray(labels)
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values from {lo} to {hi}")
    return labels


def check_finite(name: str, x) -> None:
    """A ValueError if the concrete array ``x`` holds NaN or inf (traced arrays pass).

    Examples:
      >>> check_finite("x", np.array([[0.0, np.nan], [1.0, 2.0]]))
      Traceback (most recent call last):
      ...
      ValueError: x contains 1 non-finite value (NaN or inf); first in row 0
    """
    if is_traced(x):
        return
    v = np.asarray(x)
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.complexfloating)):
        return
    bad = ~np.isfinite(v)
    if bad.any():
        count = int(bad.sum())
        row = int(np.argwhere(bad)[0][0]) if v.ndim else 0
        plural = "value" if count == 1 else "values"
        raise ValueError(f"{name} contains {count} non-finite {plural} (NaN or inf); first in row {row}")


# -- run-time failures -------------------------------------------------------------------
def mapped_axes(x) -> tuple:
    """The named mapped axes ``x`` is traced under (empty outside ``pmap`` / ``shard_map``).

    Under ``shard_map`` these are the mesh axes the value varies over (its type says so);
    under ``pmap`` (which binds its axis name without typing the values) the bound axis names,
    read from JAX's axis environment (a private API, guarded: a JAX without it gives ``()``).
    """
    aval = jax.typeof(x)
    vma = getattr(aval, "vma", None)
    if vma is None:
        vma = getattr(getattr(aval, "manual_axis_type", None), "varying", ())
    if vma:
        return tuple(sorted(vma))
    try:
        from jax._src import core

        return tuple(sorted(core.get_axis_env().axis_sizes))
    except Exception:  # pragma: no cover - a JAX without this internal
        return ()


def fail_if(x, failed, message: str, throw: bool = True):
    """The one run-time failure policy: raise where ``failed`` (``throw=True``), else pass ``x``.

    With ``throw=True`` this is :func:`equinox.error_if`: an error carrying ``message``, the
    same inside and outside ``jit`` (eagerly an ``equinox.EquinoxRuntimeError``, a
    ``RuntimeError``; under ``jax.jit`` XLA's ``JaxRuntimeError``, also a ``RuntimeError``,
    though jax's cached fast path can surface it as a ``ValueError``; either way the message
    is in it, after XLA's banner). Use the returned value: it carries the check. With
    ``throw=False`` it returns ``x`` untouched, and the caller reports ``failed`` in its result
    (``success``, ``converged``).

    Under ``pmap`` / ``shard_map`` every device must reach the same verdict, or the devices
    that pass wait forever in the next collective for the one that raised (XLA kills the
    process after its rendezvous timeout); and a raising ``lax.cond`` branch cannot return a
    device-varying value under ``shard_map``. So there the verdict is first agreed across the
    mapped axes (one scalar ``psum``), the raise is put on an unmapped zero, and ``x`` carries
    that zero.

    Examples:
      >>> import jax.numpy as jnp
      >>> fail_if(jnp.ones(2), jnp.array(False), "never").tolist()
      [1.0, 1.0]
      >>> fail_if(jnp.ones(2), jnp.array(True), "reported", throw=False).tolist()
      [1.0, 1.0]
    """
    if not throw:
        return x
    import equinox as eqx

    failed = jnp.any(failed)
    axes = mapped_axes(failed)
    if not axes:
        return eqx.error_if(x, failed, message)
    failed = jax.lax.psum(failed.astype(jnp.int32), axes) > 0
    token = eqx.error_if(jnp.zeros((), jnp.int32), failed, message)
    return jax.tree.map(lambda a: a + token.astype(a.dtype), x)


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an error (equinox's runtime errors lead with a banner)."""
    text = str(exc).strip()
    for line in text.splitlines():
        if "EquinoxRuntimeError:" in line:
            return line.split("EquinoxRuntimeError:", 1)[1].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_key(key) -> None:
    """TypeError unless ``key`` is one ``jax.random.key(seed)`` (or a legacy ``PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    legacy = dtype is not None and dtype == np.uint32 and np.shape(key) == (2,)
    if not (typed and np.ndim(key) == 0) and not legacy:
        shown = f"dtype {dtype} and shape {np.shape(key)}" if dtype is not None else repr(key)
        raise TypeError(f"key must be one jax.random.key(seed) (or a legacy PRNGKey), got {shown}")
