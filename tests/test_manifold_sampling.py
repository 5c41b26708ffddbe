"""``fm.sampling.sample(..., manifold=M)``: solves that stay on the manifold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm

M = fm.manifolds


def rotation(x, t):
    """Rotation about the z axis at unit angular speed (tangent to the sphere)."""
    return jnp.stack([-x[:, 1], x[:, 0], jnp.zeros_like(x[:, 2])], 1)


def sphere_points(n, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, 3))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("solver, steps", [("euler", 40), ("midpoint", 20), ("rk4", 10),
                                           ("dopri5", None)])
def test_sphere_solves_stay_on_the_sphere_and_match_the_rotation(solver, steps):
    x0 = sphere_points(64)
    res = fm.sampling.sample(rotation, x0, solver=solver, num_steps=steps, t1=1.0,
                             manifold=M.Sphere(), save_trajectory=True)
    np.testing.assert_allclose(jnp.linalg.norm(res.x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(res.trajectory, axis=-1), 1.0, atol=1e-5)
    c, s = np.cos(1.0), np.sin(1.0)
    exact = jnp.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1], x0[:, 2]], 1)
    tol = {"euler": 0.05, "midpoint": 5e-3, "rk4": 1e-4, "dopri5": 1e-4}[solver]
    np.testing.assert_allclose(res.x, exact, atol=tol)


def test_a_radial_field_is_made_tangent():
    """Only the tangent part of the field moves the points: a radial field leaves them put."""
    x0 = sphere_points(16)
    res = fm.sampling.sample(lambda x, t: 5.0 * x + rotation(x, t), x0, solver="rk4",
                             num_steps=10, manifold=M.Sphere())
    plain = fm.sampling.sample(rotation, x0, solver="rk4", num_steps=10, manifold=M.Sphere())
    np.testing.assert_allclose(res.x, plain.x, atol=1e-5)


def test_torus_wraps_without_jumps():
    x0 = jnp.full((4, 2), 6.0)
    res = fm.sampling.sample(lambda x, t: jnp.ones_like(x), x0, solver="dopri5",
                             manifold=M.FlatTorus(), save_trajectory=True, trajectory_points=11)
    np.testing.assert_allclose(res.x, np.full((4, 2), 7.0 - 2 * np.pi), atol=1e-5)
    traj = np.asarray(res.trajectory)
    assert traj.min() >= 0 and traj.max() < 2 * np.pi
    expect = np.mod(6.0 + np.linspace(0, 1, 11), 2 * np.pi)
    np.testing.assert_allclose(traj[:, 0, 0], expect, atol=1e-5)


def test_jit_and_bad_input():
    x0 = sphere_points(8)
    f = jax.jit(lambda x: fm.sampling.sample(rotation, x, solver="rk4", num_steps=4,
                                             manifold=M.Sphere()).x)
    np.testing.assert_allclose(f(x0), fm.sampling.sample(rotation, x0, solver="rk4", num_steps=4,
                                                         manifold=M.Sphere()).x, atol=1e-6)
    with pytest.raises(ValueError, match="must lie on the manifold"):
        fm.sampling.sample(rotation, 2.0 * x0, solver="rk4", num_steps=4, manifold=M.Sphere())
    with pytest.raises(TypeError, match="manifold must be None or an fm.manifolds"):
        fm.sampling.sample(rotation, x0, solver="rk4", num_steps=4, manifold="sphere")
