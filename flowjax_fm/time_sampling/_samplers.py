r"""Distributions over training times ``t`` in [0, 1].

Not to be confused with :mod:`flowjax_fm.sampling`, which integrates the learned ODE to
generate data. A non-uniform time sampler is the same as weighting the loss by the ratio of
its density to the uniform one (seed document, "time weighting").
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass

__all__ = ["AbstractTime", "UniformTime", "LogitNormalTime", "BetaTime", "get_time_sampler"]


def _check_n(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive Python int (a static batch size), got {n!r}")
    return n


class AbstractTime(abc.ABC):
    """Draws ``n`` training times: ``sampler(key, n) -> (n,)`` in [0, 1]."""

    @abc.abstractmethod
    def __call__(self, key: jax.Array, n: int, dtype=jnp.float32) -> jax.Array: ...


@pytree_dataclass
class UniformTime(AbstractTime):
    r""":math:`t \sim U[0, 1]`, the seed document's default.

    Examples:
      >>> import jax
      >>> UniformTime()(jax.random.key(0), 4).shape
      (4,)
    """

    def __call__(self, key, n, dtype=jnp.float32):
        return jax.random.uniform(key, (_check_n(n),), dtype)


@pytree_dataclass
class LogitNormalTime(AbstractTime):
    r"""Logit-normal: :math:`t = \mathrm{sigmoid}(\mu + s z),\ z \sim N(0, 1)`.

    Puts more training weight on intermediate times (Esser et al. 2024, SD3).

    Examples:
      >>> import jax
      >>> t = LogitNormalTime(loc=0.0, scale=1.0)(jax.random.key(0), 1000)
      >>> bool((t > 0).all() and (t < 1).all())
      True
    """

    loc: float = 0.0
    scale: float = 1.0

    def __call__(self, key, n, dtype=jnp.float32):
        z = jax.random.normal(key, (_check_n(n),), dtype)
        loc, scale = jnp.asarray(self.loc, dtype), jnp.asarray(self.scale, dtype)
        return jax.nn.sigmoid(loc + scale * z)


@pytree_dataclass
class BetaTime(AbstractTime):
    r""":math:`t \sim \mathrm{Beta}(a, b)`; ``a > b`` favours the data end.

    Examples:
      >>> import jax
      >>> float(BetaTime(2.0, 2.0)(jax.random.key(0), 20000).mean().round(2))
      0.5
    """

    a: float = 1.0
    b: float = 1.0

    def __call__(self, key, n, dtype=jnp.float32):
        return jax.random.beta(key, self.a, self.b, (_check_n(n),), dtype)


_TIMES = {"uniform": UniformTime, "logit-normal": LogitNormalTime, "beta": BetaTime}


def get_time_sampler(name: str, **kwargs) -> AbstractTime:
    """Build a time sampler by name (``uniform``, ``logit-normal``, ``beta``).

    Examples:
      >>> get_time_sampler("uniform")
      UniformTime()
    """
    if name not in _TIMES:
        raise ValueError(f"unknown time sampler {name!r}; choose one of {sorted(_TIMES)}")
    return _TIMES[name](**kwargs)
