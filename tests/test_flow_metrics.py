"""Tests for the flow diagnostics in fm.metrics: analytic fields, solver options, evaluate()."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowjax_fm.metrics import (
    curvature,
    evaluate,
    flow_integrals,
    nfe_at_tolerance,
    path_energy,
    straightness,
)

C = jnp.array([3.0, -1.0])


def constant(x, t):
    return jnp.broadcast_to(C, x.shape)


def rotation(omega):
    return lambda x, t: omega * jnp.stack([-x[:, 1], x[:, 0]], axis=1)


def test_constant_field_is_straight_with_energy_norm_squared():
    x0 = jax.random.normal(jax.random.key(0), (16, 2))
    assert float(straightness(constant, x0)) == pytest.approx(0.0, abs=1e-5)
    assert float(path_energy(constant, x0)) == pytest.approx(float(C @ C), rel=1e-6)
    assert float(curvature(constant, x0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("omega", [0.5, 2.0])
def test_rotation_field_closed_forms(omega):
    # points on the unit circle rotate by angle omega: speed omega, chord 2 sin(omega / 2),
    # acceleration omega^2 (centripetal)
    angles = jnp.linspace(0.0, 2 * jnp.pi, 9)[:-1]
    x0 = jnp.stack([jnp.cos(angles), jnp.sin(angles)], 1)
    out = flow_integrals(rotation(omega), x0, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(out["energy"], omega**2, rtol=1e-5)
    np.testing.assert_allclose(out["straightness"], omega**2 - (2 * np.sin(omega / 2)) ** 2,
                               rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(out["curvature"], omega**4, rtol=1e-5)
    assert bool((out["curvature"] > 0).all())
    rot = jnp.array([[np.cos(omega), -np.sin(omega)], [np.sin(omega), np.cos(omega)]])
    np.testing.assert_allclose(out["x1"], x0 @ rot.T, atol=1e-5)


def test_time_dependent_speed_counts_as_curvature_not_straightness():
    # x_t = x0 + t^2 c: a straight line at varying speed (v = 2 t c)
    v = lambda x, t: 2.0 * t[:, None] * C
    x0 = jnp.zeros((4, 2))
    out = flow_integrals(v, x0, rtol=1e-7, atol=1e-7)
    c2 = float(C @ C)
    np.testing.assert_allclose(out["energy"], 4.0 / 3.0 * c2, rtol=1e-5)  # int 4 t^2 dt
    np.testing.assert_allclose(out["straightness"], c2 / 3.0, rtol=1e-4)  # int (1 - 2t)^2 dt
    np.testing.assert_allclose(out["curvature"], 4.0 * c2, rtol=1e-5)  # ||2 c||^2


def test_fixed_steps_agree_with_adaptive():
    x0 = jax.random.normal(jax.random.key(1), (8, 2))
    a = flow_integrals(rotation(1.0), x0)
    b = flow_integrals(rotation(1.0), x0, solver="rk4", num_steps=64)
    for k in ("energy", "straightness", "curvature", "x1"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_nfe_grows_with_tighter_tolerance():
    x0 = jax.random.normal(jax.random.key(2), (8, 2))
    loose = int(nfe_at_tolerance(rotation(3.0), x0, 1e-3, 1e-3))
    tight = int(nfe_at_tolerance(rotation(3.0), x0, 1e-7, 1e-7))
    assert 0 < loose < tight


def test_evaluate_dict_and_w2_method():
    x0 = jax.random.normal(jax.random.key(3), (200, 2))
    ref = np.asarray(x0 + C)
    r = evaluate(constant, x0, ref, rtol=1e-6, atol=1e-6)
    assert set(r) == {"w2", "w2_method", "mmd", "path_energy", "straightness", "curvature", "nfe", "success"}
    assert r["success"] is True
    assert r["w2_method"] == "exact" and r["w2"] == pytest.approx(0.0, abs=1e-4)
    assert r["path_energy"] == pytest.approx(10.0, rel=1e-5)
    assert r["nfe"] > 0 and abs(r["mmd"]) < 0.02  # unbiased MMD^2 of equal sets: about 0
    r2 = evaluate(constant, x0, ref[:150])  # unequal sizes: Sinkhorn
    assert r2["w2_method"] == "sinkhorn" and r2["w2"] < 0.5
    r3 = evaluate(constant, x0, ref, num_steps=4, solver="euler")
    assert r3["nfe"] == 4 and r3["w2"] == pytest.approx(0.0, abs=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="event shape"):
        evaluate(constant, jnp.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least 2D"):
        path_energy(constant, jnp.zeros(2))
    with pytest.raises(ValueError, match="must return the shape"):
        straightness(lambda x, t: x[:, :1], jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="no error estimate"):
        curvature(constant, jnp.zeros((3, 2)), solver="euler")


def test_metrics_are_jittable():
    x0 = jax.random.normal(jax.random.key(4), (8, 2))
    f = jax.jit(lambda x: (path_energy(rotation(1.0), x), straightness(rotation(1.0), x)))
    e, s = f(x0)
    np.testing.assert_allclose(e, path_energy(rotation(1.0), x0), rtol=1e-6)
    assert float(s) > 0


class Counter:
    """Counts executed calls of a vector field through a host callback."""

    def __init__(self, field):
        self.field, self.calls = field, 0

    def _bump(self):
        self.calls += 1

    def __call__(self, x, t):
        jax.debug.callback(self._bump)
        return self.field(x, t)


def test_nfe_at_tolerance_is_exact():
    # the initial-step rule's 2 evaluations included (dopri5: 6 per step + 2)
    field = Counter(rotation(3.0))
    nfe = int(nfe_at_tolerance(field, jax.random.normal(jax.random.key(5), (8, 2)), 1e-4, 1e-4))
    jax.effects_barrier()
    assert nfe == field.calls and (nfe - 2) % 6 == 0


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_failed_solve_raises_eagerly_and_under_jit(jit):
    # the one error policy (fm.sampling.sample's): step cap, and non-finite fixed steps
    wrap = jax.jit if jit else (lambda f: f)
    stiff = lambda x, t: -1e4 * (x - jnp.cos(t)[:, None])
    with pytest.raises(RuntimeError, match="raise max_steps"):
        jax.block_until_ready(wrap(lambda x: flow_integrals(stiff, x, max_steps=8)["x1"])(jnp.ones((2, 2))))
    with pytest.raises(RuntimeError, match="non-finite"):
        jax.block_until_ready(
            wrap(lambda x: path_energy(lambda y, t: y * jnp.nan, x, solver="rk4", num_steps=4))(
                jnp.ones((2, 2))))
