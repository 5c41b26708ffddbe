"""Exact assignment solver: optimum equal to scipy's, permutation, jit / vmap, input checks."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from flowjax_fm.couplings._assignment import solve_assignment

KINDS = ("uniform", "sqeuclid2", "sqeuclid64", "int_ties", "duplicated", "all_equal", "offset")


def make_cost(kind: str, n: int, seed: int) -> np.ndarray:
    """A float64 cost matrix of the given family."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(size=(n, n))
    if kind in ("sqeuclid2", "sqeuclid64"):
        d = 2 if kind == "sqeuclid2" else 64
        x0 = rng.normal(size=(n, d))
        x1 = 1.0 + 0.5 * rng.normal(size=(n, d))
        return ((x0[:, None] - x1[None]) ** 2).sum(-1)
    if kind == "int_ties":
        return rng.integers(0, 4, size=(n, n)).astype(np.float64)
    if kind == "duplicated":
        # few distinct points on each side: many optimal assignments
        x0 = rng.normal(size=(max(n // 4, 1), 2))[rng.integers(0, max(n // 4, 1), n)]
        x1 = rng.normal(size=(max(n // 4, 1), 2))[rng.integers(0, max(n // 4, 1), n)]
        return ((x0[:, None] - x1[None]) ** 2).sum(-1)
    if kind == "all_equal":
        return np.full((n, n), 0.7)
    if kind == "offset":
        # large common offset, negative entries and a tiny spread
        return -1e3 + 1e-3 * rng.normal(size=(n, n))
    raise ValueError(kind)


def assert_optimal(cost64: np.ndarray, perm: np.ndarray) -> None:
    n = cost64.shape[0]
    assert perm.shape == (n,)
    assert perm.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    if n == 0:
        return
    rows, cols = linear_sum_assignment(cost64)
    best = cost64[rows, cols].sum()
    ours = cost64[np.arange(n), perm].sum()
    scale = np.abs(cost64).sum() + 1e-300
    # the same float64 problem is solved by both: equal up to rounding of the reduced costs
    assert abs(ours - best) <= 1e-12 * scale, (ours, best)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 256])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_scipy_inside_jit(kind, n, dtype):
    cost = make_cost(kind, n, seed=n)
    with jax.enable_x64(dtype == "float64"):
        c = jnp.asarray(cost, dtype=dtype)
        perm = np.asarray(jax.jit(solve_assignment)(c))
    # float32 input is solved exactly on its (widened) float32 values
    assert_optimal(np.asarray(c, dtype=np.float64), perm)


@pytest.mark.parametrize("kind", KINDS)
def test_many_random_problems_batched(kind):
    costs = np.stack([make_cost(kind, n=9, seed=s) for s in range(40)])
    perms = np.asarray(jax.jit(jax.vmap(solve_assignment))(jnp.asarray(costs, jnp.float32)))
    assert perms.shape == (40, 9)
    for c, p in zip(costs.astype(np.float32).astype(np.float64), perms, strict=True):
        assert_optimal(c, p)


def test_eager_equals_jit_and_vmap_equals_loop():
    costs = jnp.asarray(np.stack([make_cost("sqeuclid2", 33, s) for s in range(4)]), jnp.float32)
    loop = np.stack([np.asarray(solve_assignment(c)) for c in costs])
    np.testing.assert_array_equal(np.asarray(jax.vmap(solve_assignment)(costs)), loop)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(solve_assignment))(costs)), loop)
    # nested vmap, and a batch axis that is not the leading one
    nested = jax.vmap(jax.vmap(solve_assignment))(costs.reshape(2, 2, 33, 33))
    np.testing.assert_array_equal(np.asarray(nested).reshape(4, 33), loop)
    moved = jax.vmap(solve_assignment, in_axes=1)(jnp.moveaxis(costs, 0, 1))
    np.testing.assert_array_equal(np.asarray(moved), loop)


def test_inside_a_larger_jitted_function():
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k0, (64, 2))
    x1 = 1.0 + 0.5 * jax.random.normal(k1, (64, 2))

    @jax.jit
    def paired_cost(x0, x1):
        cost = jnp.sum((x0[:, None] - x1[None]) ** 2, axis=-1)
        perm = solve_assignment(cost)
        return perm, jnp.sum((x0 - x1[perm]) ** 2)

    perm, total = paired_cost(x0, x1)
    cost = np.asarray(jnp.sum((x0[:, None] - x1[None]) ** 2, axis=-1), np.float64)
    assert_optimal(cost, np.asarray(perm))
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_allclose(float(total), cost[rows, cols].sum(), rtol=1e-5)


@pytest.mark.parametrize("method", ["scipy", "jax"])
def test_reference_methods(method):
    for kind in ("uniform", "sqeuclid2", "int_ties"):
        cost = make_cost(kind, 12, seed=3)
        perm = jax.jit(lambda c, m=method: solve_assignment(c, method=m))(jnp.asarray(cost))
        assert_optimal(cost.astype(np.float32).astype(np.float64), np.asarray(perm))
    batch = jnp.asarray(np.stack([make_cost("uniform", 6, s) for s in range(3)]), jnp.float32)
    perms = jax.vmap(lambda c: solve_assignment(c, method=method))(batch)
    assert perms.shape == (3, 6)


def test_integer_costs_accepted():
    cost = make_cost("int_ties", 20, seed=1).astype(np.int32)
    assert_optimal(cost.astype(np.float64), np.asarray(solve_assignment(jnp.asarray(cost))))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (3, 2), (2, 2, 2)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match=r"square 2D array .*" + r"\(.*\)"):
        solve_assignment(jnp.zeros(shape))
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        jax.jit(solve_assignment)(jnp.zeros(shape))


def test_bad_method_and_dtype_raise():
    with pytest.raises(ValueError, match="method"):
        solve_assignment(jnp.zeros((2, 2)), method="hungarian")
    with pytest.raises(ValueError, match="real dtype"):
        solve_assignment(jnp.zeros((2, 2), jnp.complex64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cost_raises_at_run_time(bad):
    cost = np.ones((4, 4), np.float32)
    cost[1, 2] = bad
    with pytest.raises(jax.errors.JaxRuntimeError, match="non-finite"):
        jax.jit(solve_assignment)(jnp.asarray(cost)).block_until_ready()


def test_missing_extension_names_the_fix(monkeypatch):
    from flowjax_fm.couplings import _assignment

    monkeypatch.setitem(sys.modules, "flowjax_fm.couplings._lap", None)
    monkeypatch.setattr(_assignment, "_fallback_warned", False)
    with pytest.raises(ImportError, match=r"pip install -e \."):
        solve_assignment(jnp.ones((3, 3)), method="c")
    # "auto" falls back to scipy, saying so once; the reference methods still work
    with pytest.warns(_assignment.CompiledSolverMissingWarning, match=r"pip install -e \."):
        assert solve_assignment(jnp.ones((3, 3))).shape == (3,)
    assert solve_assignment(jnp.ones((3, 3)), method="scipy").shape == (3,)


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 64])
def test_large_matches_scipy(d):
    cost = make_cost(f"sqeuclid{d}", 1024, seed=7)
    with jax.enable_x64(True):
        perm = np.asarray(jax.jit(solve_assignment)(jnp.asarray(cost)))
    assert_optimal(cost, perm)


@pytest.mark.parametrize("use_avx2", [False, True])
@pytest.mark.parametrize("use_f32", [False, True])
def test_every_code_path_of_the_c_solver(use_avx2, use_f32):
    # the portable (non-AVX2) kernels and the float64-only auction, on odd sizes (SIMD tails)
    from flowjax_fm.couplings import _lap

    previous = _lap._configure(0.01, 6.0, 0.03, use_avx2, use_f32)
    try:
        for kind in ("uniform", "sqeuclid2", "sqeuclid64", "int_ties", "duplicated", "offset"):
            for n in (9, 31, 130):
                cost = make_cost(kind, n, seed=n + 1)
                out = np.empty((1, n), np.int32)
                _lap.solve(cost, out, 1, n)
                assert_optimal(cost, out[0])
    finally:
        _lap._configure(*previous)
