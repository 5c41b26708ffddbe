r"""Toy distributions on manifolds: a von Mises-Fisher mixture on the sphere, a wrapped-normal
mixture on the flat torus, and the uniform sources of both.

Points use the coordinates of :mod:`flowjax_fm.manifolds`: unit vectors of :math:`\mathbb R^3`
for :class:`~flowjax_fm.manifolds.Sphere`, angles in :math:`[0, 2\pi)` for
:class:`~flowjax_fm.manifolds.FlatTorus`. Every sampler is a pure function ``(key, n) -> (n, d)``
(float32) drawn with :mod:`jax.random` only; ``n`` and the keyword options are static, so the
samplers can be called inside :func:`jax.jit` (close over the options) and passed to
``fm.training.fit`` as they are.

* :func:`sphere_uniform` / :func:`torus_uniform`: the sources of Riemannian flow matching.
* :func:`sample_vmf`: von Mises-Fisher draws on :math:`S^{d-1}` by Wood's rejection algorithm.
* :func:`sphere_vmf_mixture`: an equal-weight mixture of vMF distributions on :math:`S^2`
  whose means are fixed by a seed.
* :func:`torus_wrapped_mixture`: a wrapped-normal mixture on :math:`\mathbb T^2` shaped like a
  protein backbone's Ramachandran plot.

References:
  Wood 1994, Simulation of the von Mises Fisher distribution. Chen & Lipman 2024, Flow Matching
  on General Geometries (the sphere and torus tasks of Riemannian flow matching).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import as_floating, check_int, check_real
from flowjax_fm.manifolds import FlatTorus, Sphere

__all__ = [
    "sample_vmf",
    "vmf_mixture_means",
    "sphere_uniform",
    "sphere_vmf_mixture",
    "torus_uniform",
    "torus_wrapped_mixture",
    "RAMACHANDRAN_MODES",
]

_F32 = jnp.float32
_TWO_PI = 2.0 * math.pi
_MAX_PROPOSALS = 1000

# (phi, psi) centre in degrees, the two standard deviations in radians along the principal
# axes, the tilt of the first axis in degrees, and the weight. The bridge mode straddles
# psi = 0 (the seam of the [0, 2 pi) chart), the beta / PPII and epsilon modes reach across
# psi = +-180 degrees (the seam of the [-pi, pi) chart).
RAMACHANDRAN_MODES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (-63.0, -43.0, 0.30, 0.16, -45.0, 0.35),  # right-handed alpha helix, elongated on the diagonal
    (-100.0, 150.0, 0.50, 0.32, 0.0, 0.30),  # beta sheet / polyproline II, broad
    (-90.0, 0.0, 0.22, 0.22, 0.0, 0.10),  # the bridge region between them
    (60.0, 40.0, 0.18, 0.18, 0.0, 0.15),  # left-handed alpha helix, tight
    (75.0, -170.0, 0.30, 0.25, 30.0, 0.10),  # glycine's epsilon region
)


# -- the sources ---------------------------------------------------------------------------------


def sphere_uniform(key: jax.Array, n: int) -> jax.Array:
    r"""``n`` points drawn uniformly from the unit sphere :math:`S^2 \subset \mathbb R^3`.

    .. math:: x = z / \lVert z \rVert,\qquad z \sim \mathcal N(0, I_3)

    Args:
      key: a ``jax.random.key``.
      n: the number of points, an int ``>= 1``.

    Returns:
      ``(n, 3)`` float32 unit vectors.

    Raises:
      ValueError: if ``n`` is not an int ``>= 1``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = sphere_uniform(jax.random.key(0), 5)
      >>> x.shape, bool(jnp.allclose(jnp.linalg.norm(x, axis=1), 1.0))
      ((5, 3), True)
    """
    return Sphere().random_uniform(key, check_int("n", n, 1), 3, _F32)


def torus_uniform(key: jax.Array, n: int) -> jax.Array:
    r"""``n`` points drawn uniformly from the flat torus :math:`\mathbb T^2`, angles in :math:`[0, 2\pi)`.

    .. math:: (\phi, \psi) \sim U[0, 2\pi)^2

    Args:
      key: a ``jax.random.key``.
      n: the number of points, an int ``>= 1``.

    Returns:
      ``(n, 2)`` float32 angles in :math:`[0, 2\pi)`.

    Raises:
      ValueError: if ``n`` is not an int ``>= 1``.

    Examples:
      >>> import jax
      >>> x = torus_uniform(jax.random.key(0), 5)
      >>> x.shape, bool(((x >= 0) & (x < 2 * 3.14159265)).all())
      ((5, 2), True)
    """
    return FlatTorus().random_uniform(key, check_int("n", n, 1), 2, _F32)


# -- von Mises-Fisher ------------------------------------------------------------------------------


def _vmf_one(key: jax.Array, mean: jax.Array, kappa: jax.Array) -> jax.Array:
    """One vMF draw around the unit vector ``mean`` (Wood's algorithm, then a reflection)."""
    d = mean.shape[0]
    m = d - 1  # the dimension of the sphere
    key_w, key_v = jax.random.split(key)
    # Wood's envelope, written without cancellation at large kappa:
    # b = (-2 kappa + sqrt(4 kappa^2 + m^2)) / m = m / (2 kappa + sqrt(4 kappa^2 + m^2))
    b = m / (2.0 * kappa + jnp.sqrt(4.0 * kappa**2 + m**2))
    x0 = (1.0 - b) / (1.0 + b)
    log_1mx0 = jnp.log(2.0 * b / (1.0 + b))  # log(1 - x0)
    c = kappa * x0 + m * (jnp.log1p(x0) + log_1mx0)

    def propose(i):
        key_z, key_u = jax.random.split(jax.random.fold_in(key_w, i))
        if m == 2:  # Beta(1, 1) is uniform: the sphere S^2 needs no gamma draws
            z = jax.random.uniform(key_z, (), mean.dtype)
        else:
            z = jax.random.beta(key_z, m / 2.0, m / 2.0, dtype=mean.dtype)
        denom = 1.0 - (1.0 - b) * z
        one_minus_w = 2.0 * b * z / denom  # 1 - w, exact in the same terms
        w = 1.0 - one_minus_w
        # 1 - x0 w = (1 - x0) + x0 (1 - w)
        log_term = jnp.log((1.0 - x0) + x0 * one_minus_w)
        log_u = jnp.log(jax.random.uniform(key_u, (), mean.dtype, minval=jnp.finfo(mean.dtype).tiny))
        accept = kappa * w + m * log_term - c >= log_u
        return w, one_minus_w, accept

    def body(state):
        i, _, _, _ = state
        return (i + 1, *propose(i))

    init = (jnp.int32(1), *propose(0))
    # every proposal is accepted with probability > 1/2: the cap only stops a NaN kappa (traced,
    # so not checked) from looping forever
    _, w, one_minus_w, _ = jax.lax.while_loop(lambda s: ~s[3] & (s[0] < _MAX_PROPOSALS), body, init)

    v = jax.random.normal(key_v, (m,), mean.dtype)
    v = v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(mean.dtype).tiny)
    radial = jnp.sqrt(jnp.maximum(one_minus_w * (2.0 - one_minus_w), 0.0))  # sqrt(1 - w^2)
    x = jnp.concatenate([w[None], radial * v])  # vMF around e_1
    # the Householder reflection that maps e_1 to the mean (a vMF is symmetric about its axis)
    u = jnp.zeros_like(mean).at[0].set(1.0) - mean
    uu = jnp.vdot(u, u)
    safe = uu > 1e-12
    reflected = x - 2.0 * u * jnp.vdot(u, x) / jnp.where(safe, uu, 1.0)
    out = jnp.where(safe, reflected, x)
    return out / jnp.linalg.norm(out)


def sample_vmf(key: jax.Array, n: int, mean, kappa) -> jax.Array:
    r"""``n`` draws from the von Mises-Fisher distribution on :math:`S^{d-1}` (Wood's algorithm).

    .. math::
       p(x) \propto \exp(\kappa\, \mu^\top x),\qquad x \in S^{d-1}

    Wood's rejection sampler draws the cosine :math:`w = \mu^\top x` from the envelope
    :math:`w = \frac{1 - (1 + b) z}{1 - (1 - b) z}`, :math:`z \sim \mathrm{Beta}(m/2, m/2)`,
    :math:`m = d - 1`, :math:`b = m / (2\kappa + \sqrt{4\kappa^2 + m^2})`, accepting when
    :math:`\kappa w + m \log(1 - x_0 w) - c \ge \log u` with :math:`x_0 = (1 - b)/(1 + b)`,
    :math:`c = \kappa x_0 + m \log(1 - x_0^2)` (each draw loops until it accepts; the
    acceptance rate measured 0.65 or more for every :math:`\kappa` and ``d`` up to 50);
    then :math:`x = (w, \sqrt{1 - w^2}\, v)` with
    :math:`v` uniform on :math:`S^{d-2}`, reflected so that :math:`e_1 \mapsto \mu`. The mean
    resultant length is :math:`\mathbb E[\mu^\top x] = A_d(\kappa) =
    I_{d/2}(\kappa) / I_{d/2 - 1}(\kappa)`, on :math:`S^2` :math:`\coth\kappa - 1/\kappa`.

    Args:
      key: a ``jax.random.key``.
      n: the number of points, an int ``>= 1``.
      mean: the mean direction, ``(d,)`` with ``d >= 2`` (normalised here), or ``(n, d)``, one
        per draw.
      kappa: the concentration, a finite number ``> 0``, or ``(n,)``, one per draw.

    Returns:
      ``(n, d)`` unit vectors of ``mean``'s floating dtype (float32 for Python numbers).

    Raises:
      ValueError: a bad ``n``, a ``mean`` that is not ``(d,)`` or ``(n, d)`` with ``d >= 2``,
        or a ``kappa`` that is not positive or not ``()`` / ``(n,)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = sample_vmf(jax.random.key(0), 2000, jnp.array([0.0, 0.0, 1.0]), 10.0)
      >>> x.shape, round(float(x[:, 2].mean()), 1)  # coth(10) - 1/10 = 0.9
      ((2000, 3), 0.9)

    References:
      Wood 1994, Simulation of the von Mises Fisher distribution.
    """
    n = check_int("n", n, 1)
    mean = as_floating("mean", mean)
    if mean.ndim not in (1, 2) or mean.shape[-1] < 2 or (mean.ndim == 2 and mean.shape[0] != n):
        raise ValueError(
            f"mean must have shape (d,) or (n, d) = ({n}, d) with d >= 2, got shape {mean.shape}"
        )
    check_real("kappa", kappa, 0.0, low_open=True)
    kappa = jnp.asarray(kappa, mean.dtype)
    if kappa.shape not in ((), (n,)):
        raise ValueError(f"kappa must be a number or have shape ({n},), got shape {kappa.shape}")
    mean = mean / jnp.linalg.norm(mean, axis=-1, keepdims=True)
    means = jnp.broadcast_to(mean, (n, mean.shape[-1]))
    kappas = jnp.broadcast_to(kappa, (n,))
    return _vmf_batch(key, means, kappas)


@jax.jit
def _vmf_batch(key, means, kappas):
    """Every row's draw, one compiled program per shape (the rejection loop is a ``while_loop``)."""
    keys = jax.random.split(key, means.shape[0])
    return jax.vmap(_vmf_one)(keys, means, kappas)


def _fibonacci_sphere(k: int) -> np.ndarray:
    """``k`` nearly evenly spread unit vectors of R^3 (the Fibonacci lattice)."""
    i = np.arange(k) + 0.5
    z = 1.0 - 2.0 * i / k
    phi = math.pi * (1.0 + math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def vmf_mixture_means(num_components: int = 4, seed: int = 0) -> np.ndarray:
    r"""The means of :func:`sphere_vmf_mixture`: a Fibonacci lattice on :math:`S^2`, turned by
    a rotation that ``seed`` fixes.

    Args:
      num_components: the number of means, an int ``>= 1``.
      seed: an int; the same seed gives the same means on every platform.

    Returns:
      ``(num_components, 3)`` float32 unit vectors (NumPy).

    Examples:
      >>> m = vmf_mixture_means(4, seed=0)
      >>> m.shape, bool(np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-6))
      ((4, 3), True)
    """
    k = check_int("num_components", num_components, 1)
    seed = check_int("seed", seed, 0)
    g = np.random.default_rng(seed).standard_normal((3, 3))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))  # a Haar-random orthogonal matrix
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return (_fibonacci_sphere(k) @ q.T).astype(np.float32)


def sphere_vmf_mixture(
    key: jax.Array,
    n: int,
    *,
    num_components: int = 4,
    kappa: float | Sequence[float] = (8.0, 16.0, 32.0, 64.0),
    seed: int = 0,
) -> jax.Array:
    r"""``n`` draws from an equal-weight mixture of von Mises-Fisher distributions on :math:`S^2`.

    .. math::
       p(x) = \frac1K \sum_{k=1}^K \frac{\kappa_k}{4\pi \sinh\kappa_k}
       \exp(\kappa_k\, \mu_k^\top x),\qquad x \in S^2

    The means :math:`\mu_k` are :func:`vmf_mixture_means` ``(K, seed)`` (a Fibonacci lattice
    turned by a seed-fixed rotation: well apart, the same on every run); each point picks its
    component uniformly and is drawn by :func:`sample_vmf`. The angular spread of a component
    is about :math:`1/\sqrt{\kappa_k}` radians.

    Args:
      key: a ``jax.random.key``.
      n: the number of points, an int ``>= 1``.
      num_components: ``K``, an int ``>= 1``.
      kappa: the concentrations, one number for all or a sequence of ``K`` finite numbers
        ``> 0``; the default ``(8, 16, 32, 64)`` (spreads from 20 to 7 degrees) needs
        ``num_components=4``.
      seed: the int that fixes the means.

    Returns:
      ``(n, 3)`` float32 unit vectors.

    Raises:
      ValueError: a bad ``n``, ``num_components`` or ``seed``; a ``kappa`` that is not
        positive or whose length is not ``num_components``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = sphere_vmf_mixture(jax.random.key(0), 1000)
      >>> x.shape, bool(jnp.allclose(jnp.linalg.norm(x, axis=1), 1.0, atol=1e-5))
      ((1000, 3), True)
      >>> sphere_vmf_mixture(jax.random.key(0), 8, num_components=2, kappa=20.0).shape
      (8, 3)
    """
    n = check_int("n", n, 1)
    means = vmf_mixture_means(num_components, seed)
    kappas = np.asarray(kappa, np.float64)
    if kappas.ndim == 0:
        kappas = np.full(num_components, float(kappas))
    if kappas.shape != (num_components,):
        raise ValueError(
            f"kappa must be a number or a sequence of num_components = {num_components} numbers, "
            f"got shape {kappas.shape}"
        )
    check_real("kappa", kappas, 0.0, low_open=True)
    return _vmf_mixture(key, n, jnp.asarray(means, _F32), jnp.asarray(kappas, _F32))


@functools.partial(jax.jit, static_argnums=1)
def _vmf_mixture(key, n, means, kappas):
    key_c, key_x = jax.random.split(key)
    comp = jax.random.randint(key_c, (n,), 0, means.shape[0])
    return _vmf_batch(key_x, means[comp], kappas[comp])


# -- the torus -------------------------------------------------------------------------------------


def torus_wrapped_mixture(key: jax.Array, n: int, *, scale: float = 1.0) -> jax.Array:
    r"""``n`` draws from a Ramachandran-like wrapped-normal mixture on the flat torus :math:`\mathbb T^2`.

    .. math::
       x = (\mu_k + \Sigma_k^{1/2} z) \bmod 2\pi,\qquad k \sim \mathrm{Cat}(w),\quad
       z \sim \mathcal N(0, I_2),\qquad
       \Sigma_k^{1/2} = R(\alpha_k)\,\mathrm{diag}(s\,\sigma_{k,1},\ s\,\sigma_{k,2})

    Five modes (:data:`RAMACHANDRAN_MODES`, centres :math:`(\phi, \psi)` in degrees) shaped
    like a protein backbone's dihedral angles: the right-handed alpha helix (elongated along
    the diagonal, weight 0.35), the broad beta-sheet / polyproline region (0.30), the bridge
    between them (0.10), the tight left-handed helix (0.15) and glycine's epsilon region
    (0.10). The bridge mode straddles :math:`\psi = 0`, the seam of the :math:`[0, 2\pi)`
    chart, and the beta and epsilon modes reach across :math:`\psi = \pm 180^\circ`, the seam
    of the :math:`[-\pi, \pi)` chart, so no chart of :math:`\mathbb R^2` holds every mode in
    one piece. Plot with ``(x + pi) % (2 pi) - pi`` for the usual :math:`[-\pi, \pi)` axes.

    Args:
      key: a ``jax.random.key``.
      n: the number of points, an int ``>= 1``.
      scale: ``s``, a finite number ``> 0`` multiplying every mode's spread.

    Returns:
      ``(n, 2)`` float32 angles in :math:`[0, 2\pi)` (the coordinates of
      :class:`~flowjax_fm.manifolds.FlatTorus`).

    Raises:
      ValueError: a bad ``n`` or ``scale``.

    Examples:
      >>> import jax
      >>> x = torus_wrapped_mixture(jax.random.key(0), 1000)
      >>> x.shape, bool(((x >= 0) & (x < 2 * 3.14159265)).all())
      ((1000, 2), True)
    """
    n = check_int("n", n, 1)
    check_real("scale", scale, 0.0, low_open=True)
    modes = np.asarray(RAMACHANDRAN_MODES, np.float64)
    centres = np.deg2rad(modes[:, :2])
    tilt = np.deg2rad(modes[:, 4])
    rot = np.stack([np.stack([np.cos(tilt), -np.sin(tilt)], -1),
                    np.stack([np.sin(tilt), np.cos(tilt)], -1)], axis=1)  # (K, 2, 2)
    roots = rot * modes[:, None, 2:4]  # R diag(sigma): column j scaled by sigma_j
    weights = modes[:, 5] / modes[:, 5].sum()
    return _wrapped_mixture(key, n, jnp.asarray(centres, _F32), jnp.asarray(roots, _F32),
                            jnp.asarray(weights, _F32), jnp.asarray(scale, _F32))


@functools.partial(jax.jit, static_argnums=1)
def _wrapped_mixture(key, n, centres, roots, weights, scale):
    key_c, key_z = jax.random.split(key)
    comp = jax.random.choice(key_c, centres.shape[0], (n,), p=weights)
    z = jax.random.normal(key_z, (n, 2), _F32)
    x = centres[comp] + jnp.einsum("nij,nj->ni", roots[comp] * scale, z)
    return jax.vmap(FlatTorus().projx)(x)
