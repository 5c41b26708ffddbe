"""Bad inputs of the semidiscrete coupling: ``fm.couplings.SemidiscreteCoupling`` and
``fm.couplings.fit_semidiscrete`` (issue 13). Every case fails before any solve (cheap), except
``diverged``, which runs ten steps of the solver."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from bad_input import Case

C = fm.couplings
KEY = jax.random.key(0)
DATA = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
G = jnp.zeros(3)
SD = "couplings.SemidiscreteCoupling"
FIT = "couplings.fit_semidiscrete"


def _sd(*args, **kwargs):
    return lambda: C.SemidiscreteCoupling(*args, **kwargs)


def _fit(data=DATA, **kwargs):
    return lambda: C.fit_semidiscrete(KEY, data, **kwargs)


_NAN = np.zeros((3, 2), np.float32)
_NAN[1, 0] = np.nan

CASES = [
    Case(SD, "data-int", _sd(jnp.zeros((3, 2), jnp.int32), G), ValueError,
         r"data must be a floating-point array, got dtype int32 and shape \(3, 2\)"),
    Case(SD, "data-1d", _sd(jnp.zeros(3), G), ValueError,
         r"data must be batched with shape \(N, \*event\), at least 2D; got shape \(3,\)"),
    Case(SD, "data-nan", _sd(_NAN, G), ValueError, r"data contains 1 non-finite value"),
    Case(SD, "potential-shape", _sd(DATA, jnp.zeros(4)), ValueError,
         r"potential must have shape \(3,\), one value per data row; got potential of shape \(4,\) "
         r"for data of shape \(3, 2\)"),
    Case(SD, "potential-2d", _sd(DATA, jnp.zeros((3, 1))), ValueError,
         r"potential must have shape \(3,\)"),
    Case(SD, "potential-inf", _sd(DATA, jnp.array([0.0, jnp.inf, 0.0])), ValueError,
         r"potential contains 1 non-finite value"),
    Case(SD, "epsilon<0", _sd(DATA, G, -0.1), ValueError,
         r"epsilon must be a finite number in \[0, inf\), got -0.1"),
    Case(SD, "epsilon=nan", _sd(DATA, G, float("nan")), ValueError, r"epsilon must be a finite number"),
    Case(SD, "epsilon=str", _sd(DATA, G, "0.1"), ValueError, r"epsilon must be a real number"),
    Case(SD, "cond-length", _sd(DATA, G, cond=jnp.zeros(2, jnp.int32)), ValueError,
         r"every leaf of cond must have the data's leading size 3 .*got a leaf of shape \(2,\)"),
    Case(SD, "cond-empty", _sd(DATA, G, cond={}), ValueError, r"cond has no arrays"),
    Case(SD, "chunk_size=0", _sd(DATA, G, chunk_size=0), ValueError,
         r"chunk_size must be an int >= 1, got 0"),
    Case(SD, "block_size=True", _sd(DATA, G, block_size=True), ValueError,
         r"block_size must be an int >= 1, got True"),
    Case(SD, "info-type", _sd(DATA, G, info={"dual": 1.0}), TypeError,
         r"info must be None or a SemidiscreteInfo"),
    Case(SD, "assign-event-shape",
         lambda: C.SemidiscreteCoupling(DATA, G).assign(KEY, jnp.zeros((4, 3))), ValueError,
         r"x0 must be a batch \(B, \*event\) with the data's event shape \(2,\); got x0 of shape "
         r"\(4, 3\) for data of shape \(3, 2\)"),
    Case(SD, "assign-unbatched", lambda: C.SemidiscreteCoupling(DATA, G).assign(KEY, jnp.zeros(2)),
         ValueError, r"got x0 of shape \(2,\)"),
    Case(SD, "assign-int", lambda: C.SemidiscreteCoupling(DATA, G).assign(KEY, jnp.zeros((4, 2), jnp.int32)),
         ValueError, r"x0 must be a floating-point array, got dtype int32"),
    Case(SD, "assign-empty", lambda: C.SemidiscreteCoupling(DATA, G).assign(KEY, jnp.zeros((0, 2))),
         ValueError, r"x0 is an empty batch: shape \(0, 2\)"),
    Case(SD, "transform-cond-without-coupling-cond",
         lambda: C.SemidiscreteCoupling(DATA, G).transform(
             KEY, fm.training.Batch(jnp.zeros((2, 2)), jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32))),
         ValueError, r"the batch carries conditions but the coupling holds none"),
    Case(SD, "transform-event-shape",
         lambda: C.SemidiscreteCoupling(DATA, G).transform(
             KEY, fm.training.Batch(jnp.zeros((2, 3)), jnp.zeros((2, 3)))),
         ValueError, r"batch.x0 of shape \(2, 3\) does not match the data rows of shape \(3, 2\)"),
    Case(FIT, "num_steps=0", _fit(num_steps=0), ValueError, r"num_steps must be an int >= 1, got 0"),
    Case(FIT, "batch_size=2.0", _fit(batch_size=2.0), ValueError, r"batch_size must be an int >= 1, got 2.0"),
    Case(FIT, "learning_rate=0", _fit(learning_rate=0.0), ValueError,
         r"learning_rate must be a finite number in \(0, inf\), got 0.0"),
    Case(FIT, "epsilon<0", _fit(epsilon=-1.0), ValueError, r"epsilon must be a finite number in \[0, inf\)"),
    Case(FIT, "threshold=-1", _fit(threshold=-1.0), ValueError,
         r"threshold must be a finite number in \(0, inf\), got -1.0"),
    Case(FIT, "num_check=1", _fit(num_check=1), ValueError, r"num_check must be an int >= 2, got 1"),
    Case(FIT, "data-1d", _fit(data=jnp.zeros(5)), ValueError,
         r"data must be batched with shape \(N, \*event\)"),
    Case(FIT, "data-nan", _fit(data=_NAN), ValueError, r"data contains 1 non-finite value"),
    Case(FIT, "cond-length", _fit(cond={"y": jnp.zeros(5, jnp.int32)}), ValueError,
         r"every leaf of cond must have the data's leading size 3"),
    Case(FIT, "source-shape", _fit(source=lambda k, n: jax.random.normal(k, (n, 3))), ValueError,
         r"source\(key, n\) must return an array \(n, \*event\) with the data's event shape \(2,\); "
         r"source\(key, 3\) gave \(3, 3\)"),
    Case(FIT, "source-not-callable", _fit(source=np.zeros((10, 2))), TypeError,
         r"source must be None or a sampler \(key, n\) -> \(n, \*event\)"),
    Case(FIT, "diverged", _fit(learning_rate=3e38, num_steps=10, batch_size=8, num_check=16), RuntimeError,
         r"the potential is not finite after 10 SGD steps at learning_rate=3e\+38 .*lower learning_rate"),
    Case(FIT, "inside-jit", lambda: jax.jit(lambda d: C.fit_semidiscrete(KEY, d).potential)(DATA),
         ValueError, r"call it outside jit"),
]

EXEMPT = {
    "couplings.SemidiscreteInfo": (
        "a result type built by fit_semidiscrete (measured numbers, no user value to check)"
    ),
}
