"""Tests for flowjax_fm.data: toy samplers and .npy point loading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowjax_fm import data
from flowjax_fm.metrics import wasserstein


@pytest.mark.parametrize("name", data.TOY_NAMES)
def test_shape_dtype_finite(name):
    key = jax.random.key(0)
    x = data.sample_toy(name, key, 257)
    assert x.shape == (257, 2) and x.dtype == jnp.float32
    assert bool(jnp.isfinite(x).all())
    np.testing.assert_array_equal(np.asarray(x), np.asarray(data.make_sampler(name)(key, 257)))
    assert not np.allclose(np.asarray(x), np.asarray(data.sample_toy(name, jax.random.key(1), 257)))


def test_inside_jit_equals_eager():
    key = jax.random.key(0)
    names = ("moons", "8gaussians", "checkerboard")  # one mechanism for all: keep compiles few

    @jax.jit
    def toys(key):
        return jnp.stack([data.sample_toy(name, key, 257) for name in names])

    expected = np.stack([np.asarray(data.sample_toy(name, key, 257)) for name in names])
    np.testing.assert_allclose(np.asarray(toys(key)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["moons"])
def test_legacy_keys_vmap_over_keys_and_one_point(name):
    keys = jax.random.split(jax.random.key(3), 4)
    out = jax.vmap(lambda k: data.sample_toy(name, k, 16))(keys)
    assert out.shape == (4, 16, 2)
    assert data.sample_toy(name, jax.random.PRNGKey(0), 16).shape == (16, 2)
    assert data.sample_toy(name, keys[0], 1).shape == (1, 2)


def test_8gaussians_structure():
    x = np.asarray(data.sample_toy("8gaussians", jax.random.key(0), 20_000), np.float64)
    angles = np.arange(8) * np.pi / 4
    centres = 5.0 * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    nearest = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=8)
    np.testing.assert_allclose(counts / len(x), 1 / 8, atol=0.01)  # ~4 standard errors
    resid = x - centres[nearest]
    np.testing.assert_allclose(resid.std(0), 0.1**0.25, rtol=0.02)  # std 0.562, not 0.1
    np.testing.assert_allclose(resid.mean(0), 0.0, atol=0.02)


def test_moons_structure():
    n = 2001
    x = np.asarray(data.sample_toy("moons", jax.random.key(0), n), np.float64)
    p = (x + 1.0) / 3.0  # arcs plus a diagonal noise u in [0, 0.2)
    # On the outer arc p - u lies on the unit circle; on the inner arc on the circle
    # centred at (1, 0.5): each point is one of them for some u in [0, 0.2).
    u = np.linspace(0.0, 0.2, 401)
    q = p[:, None, :] - u[None, :, None]
    outer = np.abs(np.hypot(q[..., 0], q[..., 1]) - 1.0).min(1) < 2e-3
    inner = np.abs(np.hypot(q[..., 0] - 1.0, q[..., 1] - 0.5) - 1.0).min(1) < 2e-3
    assert np.all(outer | inner)
    # exactly n // 2 on the outer arc (a point can be close to both arcs where they cross)
    assert (outer & ~inner).sum() <= n // 2 <= outer.sum()
    # rows are shuffled: the first half is not one arc
    assert 0.3 < outer[: n // 2].mean() < 0.7


def test_toy_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="unknown toy data set 'ring'.*8gaussians.*moons"):
        data.sample_toy("ring", key, 10)
    with pytest.raises(ValueError, match="unknown toy data set"):
        data.make_sampler("ring")
    for n in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match=r"n must be an int >= 1"):
            data.sample_toy("moons", key, n)
    assert data.sample_toy("moons", key, np.int64(4)).shape == (4, 2)


def test_match_torchcfm_in_distribution():
    """W2 between ours and torchcfm's samples is at the two-sample noise floor."""
    pytest.importorskip("torch")
    utils = pytest.importorskip("torchcfm.utils")
    import torch

    n = 2000
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - torchdyn's moons draw their noise from numpy's global RNG
    theirs = {"moons": utils.sample_moons(n).numpy(), "8gaussians": utils.sample_8gaussians(n).numpy()}
    for name, their in theirs.items():
        ours = np.asarray(data.sample_toy(name, jax.random.key(0), n))
        ours2 = np.asarray(data.sample_toy(name, jax.random.key(1), n))
        floor = wasserstein(ours, ours2)
        cross = wasserstein(ours, their)
        np.testing.assert_allclose(ours.mean(0), their.mean(0), atol=0.15 if name == "moons" else 0.4)
        np.testing.assert_allclose(ours.std(0), their.std(0), rtol=0.05)
        if name == "moons":  # measured floor 0.075 +- 0.002 (5 seeds); torchcfm's 0.08
            assert floor < 0.09 and cross < 0.09, (floor, cross)
        else:  # measured floor 0.48 +- 0.13 (5 seeds): cluster counts vary; torchcfm's 0.58
            assert floor < 0.9 and cross < 0.9, (floor, cross)


def test_load_points_roundtrip(tmp_path):
    path = tmp_path / "x.npy"
    pts = np.random.default_rng(0).normal(size=(7, 3, 2))
    np.save(path, pts)
    out = data.load_points(path)
    np.testing.assert_array_equal(out, pts)
    assert out.dtype == np.float64
    np.save(path, pts.astype(np.float32))
    assert data.load_points(str(path)).dtype == np.float32


@pytest.mark.parametrize(
    "array, match",
    [
        (np.arange(6).reshape(3, 2), "must be floating point, got dtype int64"),
        (np.ones((3, 2), bool), "must be floating point"),
        (np.ones((3, 2), np.complex64), "must be floating point"),
        (np.ones(5), r"at least 2 dimensions, got shape \(5,\)"),
        (np.ones((0, 2)), r"no points \(shape \(0, 2\)\)"),
        (np.ones((3, 0)), "empty event"),
        (np.array([[0.0, np.nan], [np.inf, 1.0]]), "2 non-finite values"),
    ],
)
def test_load_points_bad_arrays(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=match) as info:
        data.load_points(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_load_points_unreadable(tmp_path):
    cases = {"missing.npy": None, "text.npy": b"1.0 2.0\n3.0 4.0\n", "empty.npy": b""}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ValueError, match="cannot read a .npy array") as info:
            data.load_points(path)
        assert "\n" not in str(info.value)
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read a .npy array"):
        data.load_points(pickled)
    archive = tmp_path / "arch.npz"
    np.savez(archive, x=np.ones((3, 2)))
    with pytest.raises(ValueError, match="got an .npz archive"):
        data.load_points(archive)


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2"])
def test_load_points_big_endian_comes_back_native(tmp_path, dtype):
    path = tmp_path / "be.npy"
    pts = np.random.default_rng(1).normal(size=(9, 2)).astype(dtype)
    np.save(path, pts)
    out = data.load_points(path)
    assert out.dtype.isnative and out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, pts)
    jitted = jax.jit(lambda x: x + 0)(out)  # JAX takes it (f8 as f4)
    np.testing.assert_allclose(np.asarray(jitted), pts, rtol=1e-6)


def test_load_array_dataset_big_endian_comes_back_native(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 4, 1))
    y = np.array([0, 2, 1])
    np.save(tmp_path / "be.npy", x.astype(">f8"))
    np.savez(tmp_path / "be.npz", x=x.astype(">f4"), y=y.astype(">i8"))
    out, none = data.load_array_dataset(tmp_path / "be.npy")
    assert none is None and out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, x.astype(np.float32))
    out, labels = data.load_array_dataset(tmp_path / "be.npz")
    assert out.dtype == np.float32 and out.dtype.isnative
    assert labels.dtype == np.int32 and labels.dtype.isnative and labels.tolist() == [0, 2, 1]
    np.testing.assert_array_equal(out, x.astype(np.float32))
    assert float(jax.jit(jnp.sum)(out)) == pytest.approx(float(x.astype(np.float32).sum()), rel=1e-5)


# --- toy_log_prob ---------------------------------------------------------------------------


def _eight_centres():
    angles = np.arange(8) * np.pi / 4
    return 5.0 * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


@pytest.mark.parametrize("name, half_width", [("gaussian", 8.0), ("8gaussians", 9.0)])
def test_toy_log_prob_integrates_to_one(name, half_width):
    h = 0.02  # the densities are smooth on this scale (smallest std 0.56): the midpoint rule
    grid = np.arange(-half_width + h / 2, half_width, h)  # is accurate far below 1e-4
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=-1), jnp.float32)
    mass = float(jnp.exp(data.toy_log_prob(name)(points)).sum()) * h * h
    assert mass == pytest.approx(1.0, abs=1e-4)


def test_toy_log_prob_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(3)
    # near the centres, between them, and far out (where a naive sum of pdfs underflows)
    x = np.concatenate([rng.normal(scale=4.0, size=(200, 2)), _eight_centres(), [[60.0, -45.0]]])
    std = 0.1**0.25
    components = np.stack(
        [stats.multivariate_normal(mean=c, cov=std**2 * np.eye(2)).logpdf(x) for c in _eight_centres()]
    )
    expected = special.logsumexp(components, axis=0) - np.log(8.0)
    got = np.asarray(data.toy_log_prob("8gaussians")(jnp.asarray(x, jnp.float32)))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-5)
    gaussian = stats.multivariate_normal(mean=np.zeros(2), cov=np.eye(2)).logpdf(x)
    np.testing.assert_allclose(np.asarray(data.toy_log_prob("gaussian")(x)), gaussian, rtol=2e-6, atol=2e-5)


def test_toy_log_prob_is_the_density_of_the_sampler():
    # E[-log p(x)], x ~ p, is the entropy: log(2 pi e) for N(0, I_2); for the 8 well separated
    # components (6.8 std apart) log 8 + log(2 pi e s^2) up to an overlap of order 1e-10.
    n = 40_000
    s2 = 0.1**0.5
    entropies = {"gaussian": np.log(2 * np.pi * np.e), "8gaussians": np.log(8 * 2 * np.pi * np.e * s2)}
    for name, entropy in entropies.items():
        log_p = np.asarray(data.toy_log_prob(name)(data.sample_toy(name, jax.random.key(4), n)), np.float64)
        se = log_p.std() / np.sqrt(n)  # 0.005
        assert -log_p.mean() == pytest.approx(entropy, abs=4 * se), (name, -log_p.mean(), entropy, se)


def test_toy_log_prob_jit_dtypes_and_errors():
    log_p = data.toy_log_prob("8gaussians")
    x = jnp.asarray(np.random.default_rng(5).normal(scale=4.0, size=(64, 2)), jnp.float32)
    inside = jax.jit(lambda z: 2.0 * log_p(z))(x)
    np.testing.assert_allclose(np.asarray(inside), 2.0 * np.asarray(log_p(x)), rtol=1e-6, atol=1e-6)
    assert log_p(x).shape == (64,) and log_p(x).dtype == jnp.float32
    assert log_p(jnp.zeros((3, 2), jnp.int32)).dtype == jnp.float32
    grad = jax.grad(lambda z: log_p(z).sum())(x)  # a score for tests of likelihood code
    assert grad.shape == (64, 2) and bool(jnp.isfinite(grad).all())
    assert data.toy_log_prob("gaussian").__name__ == "log_prob_gaussian"
    with pytest.raises(ValueError, match=r"shape \(B, 2\), got shape \(5,\)"):
        log_p(jnp.zeros(5))
    with pytest.raises(ValueError, match=r"got shape \(4, 3\)"):
        jax.jit(log_p)(jnp.zeros((4, 3)))
    for name in set(data.TOY_NAMES) - {"gaussian", "8gaussians"}:
        with pytest.raises(ValueError, match=f"'{name}' has no closed-form density"):
            data.toy_log_prob(name)
    with pytest.raises(ValueError, match="unknown toy data set 'ring'"):
        data.toy_log_prob("ring")
    assert "toy_log_prob" in data.__all__
