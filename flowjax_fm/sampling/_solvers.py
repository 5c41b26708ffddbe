"""Solver names, two fourth-order Runge--Kutta tableaus, and how many evaluations a solver makes.

diffrax ships Euler, Midpoint, Heun, Tsit5 and Dopri5 but no four-stage fourth-order
Runge--Kutta method; :class:`RK4` (the classical tableau) and :class:`RK4ThreeEighths`
(Kutta's 3/8 rule, what torchdiffeq calls ``rk4``) are declared from their Butcher tableaus,
the way diffrax declares its own explicit methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import numpy as np
from diffrax import AbstractERK, ButcherTableau

__all__ = ["RK4", "RK4ThreeEighths", "SOLVER_NAMES", "resolve_solver", "evaluation_plan"]

# Classical RK4: c = (0, 1/2, 1/2, 1), b = (1/6, 1/3, 1/3, 1/6). Its stages k1, k2 also make
# the explicit midpoint method (b = (0, 1, 0, 0)), used as the embedded second-order method,
# so RK4 can be driven by an adaptive controller too (a conservative, order-2 error estimate).
_rk4_tableau = ButcherTableau(
    a_lower=(
        np.array([0.5]),
        np.array([0.0, 0.5]),
        np.array([0.0, 0.0, 1.0]),
    ),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.array([1 / 6, 1 / 3 - 1.0, 1 / 3, 1 / 6]),
    c=np.array([0.5, 0.5, 1.0]),
)


class RK4(AbstractERK):
    r"""The classical fourth-order Runge--Kutta method.

    .. math::
        k_1 = f(t, y),\ k_2 = f(t + h/2, y + h k_1/2),\ k_3 = f(t + h/2, y + h k_2/2),
        \ k_4 = f(t + h, y + h k_3),\quad y_{n+1} = y + h (k_1 + 2 k_2 + 2 k_3 + k_4) / 6

    Four stages, order four, not first-same-as-last. The embedded error estimate is the
    difference to the explicit midpoint method built from the same stages (order two, so
    the estimate is a local error of order three: ``error_order`` is 3). Dense output is
    third-order Hermite interpolation.

    Examples:
      >>> import diffrax, jax.numpy as jnp
      >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: -y), RK4(),
      ...                           0.0, 1.0, 0.1, jnp.array(1.0))
      >>> bool(jnp.abs(sol.ys[-1] - jnp.exp(-1.0)) < 1e-5)
      True
    """

    tableau: ClassVar[ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., diffrax.ThirdOrderHermitePolynomialInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4

    def error_order(self, terms):
        del terms
        return 3


# Kutta's 3/8 rule: c = (0, 1/3, 2/3, 1), b = (1/8, 3/8, 3/8, 1/8). Its stages k1, k3 also make
# the second-order method b = (1/4, 0, 3/4, 0) (b.c = 1/2, and even b.c^2 = 1/3), the embedded
# method of the error estimate.
_rk4_38_tableau = ButcherTableau(
    a_lower=(
        np.array([1 / 3]),
        np.array([-1 / 3, 1.0]),
        np.array([1.0, -1.0, 1.0]),
    ),
    b_sol=np.array([1 / 8, 3 / 8, 3 / 8, 1 / 8]),
    b_error=np.array([1 / 8 - 1 / 4, 3 / 8, 3 / 8 - 3 / 4, 1 / 8]),
    c=np.array([1 / 3, 2 / 3, 1.0]),
)


class RK4ThreeEighths(AbstractERK):
    r"""Kutta's 3/8-rule fourth-order Runge--Kutta method (torchdiffeq's ``rk4``).

    .. math::
        k_1 = f(t, y),\ k_2 = f(t + h/3, y + h k_1/3),\ k_3 = f(t + 2h/3, y + h(k_2 - k_1/3)),
        \ k_4 = f(t + h, y + h(k_1 - k_2 + k_3)),\quad
        y_{n+1} = y + h (k_1 + 3 k_2 + 3 k_3 + k_4) / 8

    Four stages, order four, like :class:`RK4`, with a smaller leading error coefficient on
    many problems (its stages are spread evenly over the step). The embedded error estimate
    is the difference to the second-order method :math:`y + h (k_1 + 3 k_3)/4` from the same
    stages (``error_order`` 3). Dense output is third-order Hermite interpolation.

    Examples:
      >>> import diffrax, jax.numpy as jnp
      >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: -y), RK4ThreeEighths(),
      ...                           0.0, 1.0, 0.1, jnp.array(1.0))
      >>> bool(jnp.abs(sol.ys[-1] - jnp.exp(-1.0)) < 1e-5)
      True
    """

    tableau: ClassVar[ButcherTableau] = _rk4_38_tableau
    interpolation_cls: ClassVar[Callable[..., diffrax.ThirdOrderHermitePolynomialInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4

    def error_order(self, terms):
        del terms
        return 3


_SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "midpoint": diffrax.Midpoint,
    "heun": diffrax.Heun,
    "rk4": RK4,
    "rk4_38": RK4ThreeEighths,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
}
SOLVER_NAMES: tuple[str, ...] = tuple(_SOLVERS)


def resolve_solver(solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver object from a name in :data:`SOLVER_NAMES` or a solver object."""
    if isinstance(solver, str):
        try:
            return _SOLVERS[solver.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown solver {solver!r}; valid names are {', '.join(SOLVER_NAMES)} "
                "(or pass a diffrax solver object)"
            ) from None
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    raise ValueError(
        f"solver must be one of {', '.join(SOLVER_NAMES)} or a diffrax solver object, "
        f"got {type(solver).__name__}"
    )


def evaluation_plan(solver: diffrax.AbstractSolver) -> tuple[int, bool, bool]:
    """``(stages, fsal, exact)``: field evaluations per attempted step of ``solver``.

    For explicit Runge--Kutta methods diffrax evaluates every stage of every attempted step,
    except that a first-same-as-last (FSAL) method reuses the last stage of the previous
    step as its first, so it costs ``stages`` on its first step and ``stages - 1`` after
    (a rejected step keeps the stored stage). ``exact`` is False for solvers whose count
    is not fixed by a tableau (implicit or unknown methods): their count is an estimate.
    """
    if isinstance(solver, diffrax.Euler):
        return 1, False, True
    tableau = getattr(solver, "tableau", None)
    if isinstance(tableau, ButcherTableau):
        explicit = not tableau.implicit
        return tableau.num_stages, bool(tableau.fsal), explicit
    return 1, False, False
