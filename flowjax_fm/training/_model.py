"""One adapter per kind of model: Flax NNX, equinox, or a plain ``apply(params, x, t, cond=None)``.

Every driver sees a model as a pure function of a params pytree: ``apply(params, x, t, cond)``.
:func:`as_model` turns what a user hands in into that function (a frozen pytree, so the step
holding it can be a jit argument) plus the model's own initial parameters. Nothing else in
the package asks which kind of model it was given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_choice, is_int
from flowjax_fm._pytree import hash_key, pytree_dataclass, static_field

__all__ = ["ModelApply", "as_model", "model_params", "params_of", "ACCEPTED"]

ACCEPTED = (
    "a Flax NNX module (nnx.Module), an equinox module (equinox.Module), or a plain function "
    "apply(params, x, t, cond=None) with a params pytree (Flax Linen: "
    "lambda p, x, t: net.apply(p, x, t))"
)


def _is_nnx(obj) -> bool:
    from flax import nnx

    return isinstance(obj, nnx.Module)


def _is_equinox(obj) -> bool:
    import equinox as eqx

    return isinstance(obj, eqx.Module) and not isinstance(obj, ModelApply)


def _is_linen(obj) -> bool:
    try:
        from flax import linen
    except ImportError:  # pragma: no cover - flax always ships linen today
        return False
    return isinstance(obj, linen.Module) or (isinstance(obj, type) and issubclass(obj, linen.Module))


def _call(fn, x, t, cond, r=None):
    """``fn(x, t)``, with ``cond=`` and (a two-time model) ``r=`` only when given."""
    kwargs = {}
    if cond is not None:
        kwargs["cond"] = cond
    if r is not None:
        kwargs["r"] = r
    return fn(x, t, **kwargs)


@pytree_dataclass
class ModelApply:
    """A model as a pure function ``apply(params, x, t, cond=None) -> velocity``.

    Built by :func:`as_model`. ``kind`` is ``"nnx"``, ``"equinox"`` or ``"apply"``;
    ``static`` holds what is not an array (an NNX graph definition, an equinox module's
    non-array part, or the user's function) and ``rest`` the arrays that are not trained
    (NNX non-parameter variables, equinox integer arrays). ``num_classes`` is the model's
    number of classes when it is class-conditional (its ``num_classes`` attribute; labels
    then lie in ``[0, num_classes]``, ``num_classes`` being the null class), else ``None``:
    the training drivers check labels against it. ``two_time`` is the model's ``two_time``
    attribute (``True``: a model of two times, called with the end time as ``r=r``; see
    :func:`~flowjax_fm.losses.meanflow_loss`), ``None`` when the model does not say (a plain
    function, most equinox modules).

    Raises:
      ValueError: ``kind`` not one of the three, or ``num_classes`` not ``None`` or an int
        ``>= 1``.
    """

    rest: Any
    kind: str = static_field()
    static: Any = static_field()
    num_classes: int | None = static_field(default=None)
    two_time: bool | None = static_field(default=None)

    def __post_init__(self):
        check_choice("kind", self.kind, _KINDS)
        if self.num_classes is not None and not (is_int(self.num_classes) and self.num_classes >= 1):
            raise ValueError(f"num_classes must be None or an int >= 1, got {self.num_classes!r}")

    def __call__(self, params, x, t, cond=None, r=None):
        """The model's output at ``(x, t)``; a two-time model also takes the end time ``r``
        (always passed by keyword, ``r=r``)."""
        if self.kind == "nnx":
            from flax import nnx

            return _call(nnx.merge(self.static, params, self.rest), x, t, cond, r)
        if self.kind == "equinox":
            import equinox as eqx

            return _call(eqx.combine(params, self.rest, self.static), x, t, cond, r)
        return _call(lambda *a, **k: self.static(params, *a, **k), x, t, cond, r)

    def __hash__(self):  # the static parts decide what a compiled program depends on
        return hash((self.kind, hash_key(self.static), self.num_classes, self.two_time))

    def __eq__(self, other):
        return (
            isinstance(other, ModelApply)
            and self.kind == other.kind
            and self.num_classes == other.num_classes
            and self.two_time == other.two_time
            and hash_key(self.static) == hash_key(other.static)
        )


_KINDS = ("nnx", "equinox", "apply")


def _two_time(model) -> bool | None:
    """A model's ``two_time`` attribute (a bool: it takes ``r=``), ``None`` when it has none."""
    value = getattr(model, "two_time", None)
    return value if isinstance(value, bool) else None


def _num_classes(model) -> int | None:
    """A class-conditional model's ``num_classes`` attribute (an int), else ``None``."""
    value = getattr(model, "num_classes", None)
    return int(value) if is_int(value) and value >= 1 else None


def _check_apply_signature(fn: Callable) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust the caller
        return
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    var = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    if len(positional) < 3 and not var:
        raise TypeError(
            f"a plain-function model must be apply(params, x, t, cond=None); {fn!r} takes "
            f"{len(positional)} positional argument(s). For a vector field v(x, t) that has no "
            "parameters to train there is nothing to fit; accepted models: " + ACCEPTED
        )


def as_model(model) -> tuple[ModelApply, Any]:
    """``(apply, params)`` for any accepted model; ``params`` is ``None`` for a plain function.

    Raises:
      TypeError: for anything but an NNX module, an equinox module or a plain function
        ``apply(params, x, t, cond=None)`` (an unbound Linen module, a class, an array, ...).

    Examples:
      >>> import jax.numpy as jnp
      >>> apply, params = as_model(lambda p, x, t: p * x)
      >>> apply(2.0, jnp.ones((1, 2)), jnp.zeros(1)).tolist(), params
      ([[2.0, 2.0]], None)
    """
    if isinstance(model, ModelApply):
        return model, None
    if _is_nnx(model):
        from flax import nnx

        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return ModelApply(rest=rest, kind="nnx", static=graphdef,
                          num_classes=_num_classes(model), two_time=_two_time(model)), params
    if _is_equinox(model):
        import equinox as eqx

        params, other = eqx.partition(model, eqx.is_inexact_array)
        rest, static = eqx.partition(other, eqx.is_array)
        return ModelApply(rest=rest, kind="equinox", static=static,
                          num_classes=_num_classes(model), two_time=_two_time(model)), params
    if _is_linen(model):
        raise TypeError(
            f"got a Flax Linen module ({type(model).__name__}): Linen modules hold no parameters. "
            "Pass lambda p, x, t: net.apply(p, x, t) as the model and net.init(...) as the "
            "params. Accepted models: " + ACCEPTED
        )
    if isinstance(model, type) or not callable(model):
        what = f"the class {model.__name__}" if isinstance(model, type) else type(model).__name__
        raise TypeError(f"cannot use {what} as a model; accepted: " + ACCEPTED)
    _check_apply_signature(model)
    return ModelApply(rest=None, kind="apply", static=model), None


def model_params(model):
    """The trainable parameters a model carries (``None`` for a plain function)."""
    return as_model(model)[1]


def params_of(model_or_params) -> Any:
    """Parameters from an NNX or equinox model, or a params pytree given as it is.

    Raises:
      TypeError: for a plain function or a Linen module (they hold no parameters), or a
        pytree with non-array leaves.
    """
    if _is_nnx(model_or_params) or _is_equinox(model_or_params):
        return model_params(model_or_params)
    if _is_linen(model_or_params) or isinstance(model_or_params, type) or callable(model_or_params):
        raise TypeError(
            f"init_state takes a model that holds its parameters or a params pytree; got "
            f"{type(model_or_params).__name__}. Accepted: an nnx.Module, an equinox.Module, or "
            "the params of an apply function (for Linen: net.init(key, x, t))"
        )
    leaves = jax.tree.leaves(model_or_params)
    if not leaves:
        raise TypeError("the params pytree has no leaves: there is nothing to train")
    bad = [type(leaf).__name__ for leaf in leaves if not _is_array_like(leaf)]
    if bad:
        raise TypeError(f"params must be a pytree of arrays; found leaves of type {sorted(set(bad))}")
    return jax.tree.map(jnp.asarray, model_or_params)


def _is_array_like(x) -> bool:
    return isinstance(x, jax.Array | float | int) or hasattr(x, "__array__")
