r"""Distributions over training times ``t`` in [0, 1].

Not to be confused with :mod:`flowjax_fm.sampling`, which integrates the learned ODE to
generate data. A non-uniform time sampler is the same as weighting the loss by the ratio of
its density to the uniform one (seed document, "time weighting").
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_choice, check_positive_int, check_real
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.paths._base import check_kwargs

__all__ = [
    "AbstractTime", "UniformTime", "LogitNormalTime", "BetaTime", "get_time_sampler", "check_draw",
]


def check_draw(n, dtype) -> tuple[int, jnp.dtype]:
    """``(n, dtype)`` of a draw, checked: ``n`` an int >= 1 (Python or NumPy; a static batch
    size, so not a bool or a float), ``dtype`` a floating dtype."""
    n = check_positive_int("n", n)
    try:
        kind = jnp.dtype(dtype)
    except TypeError:
        kind = None
    if kind is None or not jnp.issubdtype(kind, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype (float32, bfloat16, ...), got {dtype!r}")
    return n, kind


class AbstractTime(abc.ABC):
    """Draws ``n`` training times: ``sampler(key, n, dtype) -> (n,)`` in [0, 1].

    ``n`` is a static int >= 1 and ``dtype`` a floating dtype; a ValueError otherwise.
    """

    @abc.abstractmethod
    def __call__(self, key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array: ...


@pytree_dataclass
class UniformTime(AbstractTime):
    r""":math:`t \sim U[0, 1]`, the seed document's default.

    Raises:
      ValueError: at a draw, ``n`` not an int >= 1 or ``dtype`` not floating.

    Examples:
      >>> import jax
      >>> UniformTime()(jax.random.key(0), 4).shape
      (4,)
    """

    def __call__(self, key, n, dtype=jnp.float32):
        n, dtype = check_draw(n, dtype)
        return jax.random.uniform(key, (n,), dtype)


@pytree_dataclass
class LogitNormalTime(AbstractTime):
    r"""Logit-normal: :math:`t = \mathrm{sigmoid}(\mu + s z),\ z \sim N(0, 1)`.

    Puts more training weight on intermediate times (Esser et al. 2024, SD3).

    Args:
      loc: :math:`\mu`, a finite number.
      scale: :math:`s`, a finite number in ``(0, inf)``.

    Raises:
      ValueError: for a value out of its range (checked when concrete: traced leaves pass);
        at a draw, ``n`` not an int >= 1 or ``dtype`` not floating.

    Examples:
      >>> import jax
      >>> t = LogitNormalTime(loc=0.0, scale=1.0)(jax.random.key(0), 1000)
      >>> bool((t > 0).all() and (t < 1).all())
      True
    """

    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        check_real("loc", self.loc)
        check_real("scale", self.scale, 0.0, low_open=True)

    def __call__(self, key, n, dtype=jnp.float32):
        n, dtype = check_draw(n, dtype)
        z = jax.random.normal(key, (n,), dtype)
        loc, scale = jnp.asarray(self.loc, dtype), jnp.asarray(self.scale, dtype)
        return jax.nn.sigmoid(loc + scale * z)


@pytree_dataclass
class BetaTime(AbstractTime):
    r""":math:`t \sim \mathrm{Beta}(a, b)`; ``a > b`` favours the data end.

    Args:
      a, b: the shape parameters, finite numbers in ``(0, inf)``.

    Raises:
      ValueError: for a value out of its range (checked when concrete: traced leaves pass);
        at a draw, ``n`` not an int >= 1 or ``dtype`` not floating.

    Examples:
      >>> import jax
      >>> float(BetaTime(2.0, 2.0)(jax.random.key(0), 20000).mean().round(2))
      0.5
    """

    a: float = 1.0
    b: float = 1.0

    def __post_init__(self):
        check_real("a", self.a, 0.0, low_open=True)
        check_real("b", self.b, 0.0, low_open=True)

    def __call__(self, key, n, dtype=jnp.float32):
        n, dtype = check_draw(n, dtype)
        return jax.random.beta(key, self.a, self.b, (n,), dtype)


def _times() -> dict[str, type]:
    """The samplers by name (``_schedules`` builds on this module, so it is imported here)."""
    from flowjax_fm.time_sampling._schedules import ModeTime, ShiftedTime

    return {
        "uniform": UniformTime,
        "logit-normal": LogitNormalTime,
        "beta": BetaTime,
        "mode": ModeTime,
        "shifted": ShiftedTime,
    }


def get_time_sampler(name: str, **kwargs) -> AbstractTime:
    """Build a time sampler by name (``uniform``, ``logit-normal``, ``beta``, ``mode``, ``shifted``).

    Args:
      name: ``uniform``, ``logit-normal``, ``beta``, ``mode`` (:class:`ModeTime`) or
        ``shifted`` (:class:`ShiftedTime`).
      **kwargs: the sampler's fields (``loc``, ``scale``; ``a``, ``b``; ``scale``; ``base``,
        ``shift``), checked by it.

    Raises:
      ValueError: for an unknown name (the message lists the valid ones), an argument the
        sampler does not take, or a value out of its range.
      TypeError: a required field missing (``shifted`` needs ``base`` and ``shift``), or a
        ``base`` that is not a sampler.

    Examples:
      >>> get_time_sampler("uniform")
      UniformTime()
      >>> get_time_sampler("shifted", base=get_time_sampler("mode"), shift=3.0)
      ShiftedTime(base=ModeTime(scale=1.29), shift=3.0)
      >>> get_time_sampler("beta", a=0.0)
      Traceback (most recent call last):
      ...
      ValueError: a must be a finite number in (0, inf), got 0.0
    """
    times = _times()
    check_choice("time sampler", name, sorted(times))
    check_kwargs("time sampler", name, times[name], kwargs)
    return times[name](**kwargs)
