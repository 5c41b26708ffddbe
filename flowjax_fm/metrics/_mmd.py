r"""Maximum mean discrepancy with a mixture of RBF kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_finite, check_real

__all__ = ["mmd"]

_BLOCK = 512  # rows of a kernel block: memory is _BLOCK x (other set's size)
_MEDIAN_POINTS = 1000  # the median heuristic looks at an evenly strided subset this big
_MEDIAN_SCALES = (0.5, 1.0, 2.0)


def _median_distance(z: jax.Array) -> jax.Array:
    """Median pairwise Euclidean distance of an evenly strided subset of ``z``."""
    z = z[:: -(-z.shape[0] // _MEDIAN_POINTS)]
    sq = (z * z).sum(1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)
    rows, cols = np.triu_indices(z.shape[0], k=1)
    h = jnp.sqrt(jnp.median(d2[rows, cols]))
    return jnp.where(h > 0, h, 1.0)  # every point equal: any bandwidth gives MMD = 0


def _kernel_sum(a: jax.Array, b: jax.Array, gammas: jax.Array, same: bool) -> jax.Array:
    r""":math:`\sum_{ij} k(a_i, b_j)` (``i != j`` when ``same``), ``_BLOCK`` rows at a time."""
    n = a.shape[0]
    num_blocks = -(-n // _BLOCK)
    rows = jnp.arange(num_blocks * _BLOCK).reshape(num_blocks, _BLOCK)
    a = jnp.pad(a, ((0, num_blocks * _BLOCK - n), (0, 0))).reshape(num_blocks, _BLOCK, -1)
    b_sq = (b * b).sum(1)
    cols = jnp.arange(b.shape[0])

    def block(args):
        a_blk, row = args
        d2 = jnp.maximum((a_blk * a_blk).sum(1)[:, None] + b_sq[None, :] - 2.0 * a_blk @ b.T, 0.0)
        k = sum(jnp.exp(-gammas[i] * d2) for i in range(gammas.shape[0])) / gammas.shape[0]
        keep = (row < n)[:, None]
        if same:
            keep = keep & (row[:, None] != cols[None, :])
        return jnp.where(keep, k, 0.0).sum()

    return jax.lax.map(block, (a, rows)).sum()


@jax.jit
def _mmd2(x, y, bandwidths):
    z = jnp.concatenate([x, y])
    centre = z.mean(0)  # kernels are translation invariant; centring reduces round-off
    x, y, z = x - centre, y - centre, z - centre
    if bandwidths is None:
        bandwidths = _median_distance(z) * jnp.asarray(_MEDIAN_SCALES, x.dtype)
    gammas = 1.0 / (2.0 * bandwidths**2)
    n, m = x.shape[0], y.shape[0]
    k_xx = _kernel_sum(x, x, gammas, same=True) / (n * (n - 1))
    k_yy = _kernel_sum(y, y, gammas, same=True) / (m * (m - 1))
    k_xy = _kernel_sum(x, y, gammas, same=False) / (n * m)
    return k_xx + k_yy - 2.0 * k_xy


def mmd(x: jax.Array, y: jax.Array, *, bandwidths=None) -> jax.Array:
    r"""Unbiased squared maximum mean discrepancy with a mixture of RBF kernels.

    .. math::

      \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)} \sum_{i \ne i'} k(x_i, x_{i'})
        + \frac{1}{m(m-1)} \sum_{j \ne j'} k(y_j, y_{j'})
        - \frac{2}{nm} \sum_{i, j} k(x_i, y_j),
      \qquad k(a, b) = \frac{1}{|H|} \sum_{h \in H} e^{-\lVert a - b\rVert^2 / (2 h^2)}.

    An unbiased estimate of :math:`\mathrm{MMD}^2`, which is zero exactly when the two
    distributions are equal (the kernel is characteristic): for two samples of one
    distribution it is centred on 0 and can be slightly negative; its spread is
    :math:`O(1/n)`. The kernel is the *mean* of the RBF kernels, so it lies in
    :math:`[0, 1]` and :math:`\mathrm{MMD}^2 \le 2`. Default bandwidths (``None``):
    :math:`H = \{0.5, 1, 2\} \times` the median pairwise distance of the pooled sample (the
    median heuristic, computed on an evenly strided subset of at most 1,000 pooled points).
    Pass fixed ``bandwidths`` to compare numbers across runs: the median heuristic adapts to
    the data and so differs between comparisons.

    Jit-able; memory is ``512 x max(n, m)`` per kernel block, so large sets are fine
    (about 0.1 s for 2,000 against 2,000 points in 2D after compilation).

    Checks: shapes always (at trace time). Values only when concrete: NaN / inf in ``x`` or
    ``y`` and non-positive or non-finite ``bandwidths`` are refused eagerly; under
    ``jax.jit`` (traced inputs) they cannot be read and pass through unchecked (a NaN input
    then gives a NaN result). Integer inputs are accepted and computed in ``float32``.

    Args:
      x: first sample, shape ``(n, *event)``, ``n >= 2`` (the unbiased estimate needs two
        points per set: one point is refused), finite; events are flattened.
      y: second sample, shape ``(m, *event)``, ``m >= 2``, same event shape, finite.
      bandwidths: RBF length scales :math:`h`, a finite positive scalar or non-empty 1D
        sequence; ``None`` for the median heuristic above.

    Returns:
      :math:`\widehat{\mathrm{MMD}}^2_u`, a scalar JAX array in the floating dtype of
      ``x`` and ``y`` (float32 by default).

    Raises:
      ValueError: if ``x`` or ``y`` has fewer than 2 dimensions or 2 points, or holds NaN /
        inf (concrete inputs), the event shapes differ or are empty, or ``bandwidths`` is
        empty, not 0D / 1D, or not finite > 0.

    Examples:
      >>> import jax
      >>> from flowjax_fm.data import sample_toy
      >>> from flowjax_fm.metrics import mmd
      >>> x = sample_toy("moons", jax.random.key(0), 1000)
      >>> y = sample_toy("moons", jax.random.key(1), 1000)
      >>> bool(abs(mmd(x, y)) < 2e-3), bool(mmd(x, y + 1.0) > 0.05)
      (True, True)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    for name, a in (("x", x), ("y", y)):
        if a.ndim < 2 or a.shape[0] < 2:
            single = " (a single point: the unbiased estimate divides by N (N - 1))" if (
                a.ndim >= 2 and a.shape[0] == 1) else ""
            raise ValueError(
                f"{name} must have shape (N, *event) with N >= 2 points, got shape {a.shape}{single}"
            )
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"x and y must have the same event shape, got shapes {x.shape} and {y.shape}")
    if x[0].size == 0:
        raise ValueError(f"x and y must have a non-empty event, got shapes {x.shape} and {y.shape}")
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"x and y must be real, got dtypes {x.dtype} and {y.dtype}")
    x = x.reshape(x.shape[0], -1).astype(dtype)
    y = y.reshape(y.shape[0], -1).astype(dtype)
    check_finite("x", x)  # after the cast: NumPy does not see bfloat16 as floating
    check_finite("y", y)
    if bandwidths is not None:
        check_real("bandwidths", bandwidths, 0.0, low_open=True)
        bandwidths = jnp.atleast_1d(jnp.asarray(bandwidths, dtype))
        if bandwidths.ndim != 1 or bandwidths.shape[0] == 0:
            raise ValueError(
                f"bandwidths must be a positive scalar or a non-empty 1D sequence, got shape "
                f"{bandwidths.shape}"
            )
    return _mmd2(x, y, bandwidths)
