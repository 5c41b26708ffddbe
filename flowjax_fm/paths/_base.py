"""The probability-path interface shared by every path."""

from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp

__all__ = ["AbstractPath", "check_example", "check_kwargs"]


def check_example(x0: jax.Array, x1: jax.Array, t: jax.Array, noise: jax.Array | None) -> None:
    """Validate one example at trace time; raise ``ValueError`` quoting the shapes."""
    if jnp.shape(x0) != jnp.shape(x1):
        raise ValueError(f"x0 and x1 must have the same shape, got {jnp.shape(x0)} and {jnp.shape(x1)}")
    if jnp.shape(t) != ():
        raise ValueError(
            f"a path works on one example: t must be a scalar (shape ()), got shape {jnp.shape(t)}; "
            "batch with jax.vmap"
        )
    if noise is not None and jnp.shape(noise) != jnp.shape(x0):
        raise ValueError(
            f"noise must have the shape of x0, got {jnp.shape(noise)} and {jnp.shape(x0)}"
        )
    for name, a in (("x0", x0), ("x1", x1), ("t", t)):
        if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
            raise ValueError(f"{name} must be floating point, got dtype {jnp.result_type(a)}")


def check_kwargs(what: str, name: str, cls: type, kwargs: dict) -> None:
    """A ValueError if ``kwargs`` holds a key that is not a field of the dataclass ``cls``."""
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(k for k in kwargs if k not in fields)
    if unknown:
        takes = ", ".join(fields) if fields else "no arguments"
        raise ValueError(
            f"{what} {name!r} takes {takes}; got unknown argument(s) {', '.join(unknown)}"
        )


class AbstractPath(abc.ABC):
    r"""A conditional probability path between a source sample and a data sample.

    A path defines, for one pair :math:`(x_0, x_1)` and (for stochastic paths) one standard
    normal draw :math:`\epsilon`, a point :math:`x_t` and the conditional target velocity

    .. math:: u_t = \frac{\partial}{\partial t} x_t(x_0, x_1, \epsilon),

    which flow matching regresses onto. Methods take **one example** (``t`` of shape ``()``);
    batch them with ``jax.vmap``.

    Subclasses set the class attribute ``stochastic`` (True when ``sample`` reads ``noise``)
    and implement :meth:`sample` and :meth:`target_velocity`.
    """

    stochastic: bool = False

    @abc.abstractmethod
    def sample(self, x0: jax.Array, x1: jax.Array, t: jax.Array, noise: jax.Array | None = None):
        """Point on the path at time ``t`` for one example."""

    @abc.abstractmethod
    def target_velocity(
        self, x0: jax.Array, x1: jax.Array, t: jax.Array, noise: jax.Array | None = None
    ):
        """Conditional target velocity ``d/dt sample`` at time ``t`` for one example."""

    def sample_and_target(
        self, x0: jax.Array, x1: jax.Array, t: jax.Array, noise: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(sample(...), target_velocity(...))`` in one call (what the loss uses)."""
        return self.sample(x0, x1, t, noise), self.target_velocity(x0, x1, t, noise)

    def _noise(self, x0: jax.Array, noise: jax.Array | None) -> jax.Array:
        if noise is None:
            raise ValueError(
                f"{type(self).__name__} is stochastic: pass noise ~ N(0, I) of x0's shape "
                f"{jnp.shape(x0)}"
            )
        return noise
