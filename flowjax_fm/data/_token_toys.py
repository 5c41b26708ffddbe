r"""Token toy data with known distributions, for discrete flow matching.

Two tasks whose exact law is available, so a generator can be scored without a model of the
data:

* :func:`grid_tokens`: a 2D toy of :func:`~flowjax_fm.data.sample_toy` (``checkerboard`` or
  ``moons``) quantised to a ``V x V`` grid, a sequence of ``L = 2`` tokens (column, row);
  :func:`grid_token_probs` is the exact ``V x V`` table (analytic for the checkerboard, a dense
  deterministic quadrature for the moons), for total-variation scores.
* :func:`markov_digits`: strings of ``L`` digits from a small fixed Markov chain
  (:func:`markov_chain`); :func:`markov_log_prob` is their exact log-likelihood.

All samplers are pure functions of ``key`` drawn with :mod:`jax.random`; sizes and names are
static (one compile per combination), and the results are ``int32`` tokens ``(n, L)``, the
form :mod:`flowjax_fm.discrete` and ``fm.training.fit`` take.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_choice, check_int, check_positive_int, is_concrete
from flowjax_fm.data._toy import sample_toy

__all__ = [
    "GRID_BOXES",
    "grid_tokens",
    "grid_token_probs",
    "markov_chain",
    "markov_digits",
    "markov_log_prob",
]

GRID_BOXES: dict[str, tuple[float, float, float, float]] = {
    # (x_min, x_max, y_min, y_max): the toy's support (sample_toy's scales), cut into V x V cells
    "checkerboard": (-4.0, 4.0, -4.0, 4.0),
    "moons": (-4.0, 5.6, -2.5, 2.6),
}
"""The box ``(x_min, x_max, y_min, y_max)`` that :func:`grid_tokens` cuts into ``V x V`` cells."""

# moons quadrature: arc positions and noise shifts per arc (midpoint rules)
_MOON_ARC_POINTS = 8192
_MOON_SHIFT_POINTS = 256

# the Markov chain: P(b | a) = eps / V + (1 - eps) [w_step 1{b = a + 1} + w_double 1{b = 2 a}] (mod V)
_EPS = 0.1
_W_STEP = 0.6
_W_DOUBLE = 0.4


def _check_grid(name, vocab) -> tuple[str, int]:
    name = check_choice("name", name, tuple(GRID_BOXES))
    return name, check_int("vocab", vocab, 2)


def _cells(values: jax.Array, low: float, high: float, vocab: int) -> jax.Array:
    index = jnp.floor((values - low) * (vocab / (high - low)))
    return jnp.clip(index, 0, vocab - 1).astype(jnp.int32)


def _quantise(points: jax.Array, name: str, vocab: int) -> jax.Array:
    x_min, x_max, y_min, y_max = GRID_BOXES[name]
    return jnp.stack(
        [_cells(points[:, 0], x_min, x_max, vocab), _cells(points[:, 1], y_min, y_max, vocab)], axis=1
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _grid_tokens(key, n, name, vocab):
    return _quantise(sample_toy(name, key, n), name, vocab)


def grid_tokens(key: jax.Array, n: int, *, name: str = "checkerboard", vocab: int = 64) -> jax.Array:
    r"""Points of a 2D toy quantised to a ``V x V`` grid: sequences of ``L = 2`` tokens.

    With the box :math:`[x_{\min}, x_{\max}) \times [y_{\min}, y_{\max})` of :data:`GRID_BOXES`
    and :math:`p = (p_x, p_y)` drawn by ``fm.data.sample_toy(name, key, n)``,

    .. math::
       x^1 = \Big\lfloor V \frac{p_x - x_{\min}}{x_{\max} - x_{\min}} \Big\rfloor, \qquad
       x^2 = \Big\lfloor V \frac{p_y - y_{\min}}{y_{\max} - y_{\min}} \Big\rfloor,

    clipped to ``[0, V)`` (the boxes hold the whole support, so the clip only catches the
    closed upper edge). The token pair is (column, row): ``probs[x1, x2]`` of
    :func:`grid_token_probs` is the chance of a draw. As in ``sample_toy``, the ``moons``
    arc positions are evenly spaced (only the noise is random), so its rows are a stratified
    sample, closer to the table than ``n`` independent draws.

    Args:
      key: a ``jax.random.key``.
      n: the number of sequences, an int >= 1 (static).
      name: ``"checkerboard"`` (``[-4, 4]^2``, 8 of 16 squares) or ``"moons"``.
      vocab: ``V``, the cells per axis, an int >= 2 (a multiple of 4 puts the checkerboard's
        square edges on cell edges).

    Returns:
      ``int32`` tokens of shape ``(n, 2)`` in ``[0, V)``.

    Raises:
      ValueError: ``n`` not an int >= 1, ``name`` unknown, ``vocab`` not an int >= 2.

    Examples:
      >>> import jax
      >>> from flowjax_fm.data._token_toys import grid_tokens
      >>> x = grid_tokens(jax.random.key(0), 1000, vocab=4)  # one cell per square
      >>> x.shape, x.dtype, bool(((x[:, 0] + x[:, 1]) % 2 == 0).all())
      ((1000, 2), dtype('int32'), True)
    """
    n = check_positive_int("n", n)
    name, vocab = _check_grid(name, vocab)
    return _grid_tokens(key, n, name, vocab)


def _even_squares(z: np.ndarray) -> np.ndarray:
    """:math:`G(z) = \\int_0^z 1\\{\\lfloor s/2 \\rfloor \\text{ even}\\} ds` (period 4)."""
    return 2.0 * np.floor(z / 4.0) + np.minimum(np.mod(z, 4.0), 2.0)


def _checkerboard_probs(vocab: int) -> jax.Array:
    # on-squares: floor(x / 2) + floor(y / 2) even, density 1 / 32 on them (area 32 of 64).
    # The area of a cell on them factorises: E_x E_y + O_x O_y, E the length on even columns.
    # (in float64 NumPy: a table computed once, exact to rounding)
    edges = np.linspace(-4.0, 4.0, vocab + 1)
    even = _even_squares(edges[1:]) - _even_squares(edges[:-1])
    odd = (edges[1:] - edges[:-1]) - even
    area = even[:, None] * even[None, :] + odd[:, None] * odd[None, :]
    return jnp.asarray(area / area.sum(), jnp.float32)


def _moons_probs(vocab: int) -> jax.Array:
    # sample_toy's moons in the continuum limit: an arc (outer or inner, 1/2 each), a position
    # s ~ U[0, pi], one shift u ~ U[0, 0.2] added to both coordinates, then 3 (.) - 1.
    # Midpoint rules in s and u; the quadrature error is far below 1e-3 in total variation.
    s = (jnp.arange(_MOON_ARC_POINTS) + 0.5) * (math.pi / _MOON_ARC_POINTS)
    u = (jnp.arange(_MOON_SHIFT_POINTS) + 0.5) * (0.2 / _MOON_SHIFT_POINTS)
    arcs = [(jnp.cos(s), jnp.sin(s)), (1.0 - jnp.cos(s), 0.5 - jnp.sin(s))]
    table = jnp.zeros((vocab * vocab,), jnp.float32)
    for ax, ay in arcs:
        px = 3.0 * (ax[:, None] + u[None, :]) - 1.0
        py = 3.0 * (ay[:, None] + u[None, :]) - 1.0
        cells = _quantise(jnp.stack([px.ravel(), py.ravel()], axis=1), "moons", vocab)
        table = table.at[cells[:, 0] * vocab + cells[:, 1]].add(1.0)
    return (table / jnp.sum(table)).reshape(vocab, vocab)


@functools.lru_cache(maxsize=16)
def _grid_token_probs(name: str, vocab: int) -> jax.Array:
    return _checkerboard_probs(vocab) if name == "checkerboard" else _moons_probs(vocab)


def grid_token_probs(name: str = "checkerboard", vocab: int = 64) -> jax.Array:
    r"""The exact law of :func:`grid_tokens`: a ``V x V`` table of cell probabilities.

    .. math:: \pi[i, j] = P\big(x^1 = i,\ x^2 = j\big) = \int_{\text{cell}(i, j)} p(z)\, dz.

    ``checkerboard``: analytic. The density is :math:`1/32` on the squares with
    :math:`\lfloor z_x/2 \rfloor + \lfloor z_y/2 \rfloor` even, so a cell
    :math:`[a, b) \times [c, d)` has mass :math:`(E_x E_y + O_x O_y)/32`, with :math:`E_x`
    (:math:`O_x`) the length of :math:`[a, b)` on even (odd) columns. ``moons``: the continuum
    limit of ``sample_toy``'s construction (arc position uniform on :math:`[0, \pi]`, shift
    uniform on :math:`[0, 0.2]`) by a dense midpoint rule over both (8192 x 256 points per arc),
    accurate to well under 1e-3 in total variation. Cached per ``(name, vocab)``.

    Use it to score generated tokens ``x`` by total variation,
    :math:`\mathrm{TV} = \tfrac12 \sum_{ij} |\hat\pi[i, j] - \pi[i, j]|`, with
    :math:`\hat\pi` the histogram of ``x``.

    Args:
      name: ``"checkerboard"`` or ``"moons"``.
      vocab: ``V``, an int >= 2.

    Returns:
      ``float32`` probabilities of shape ``(V, V)``, indexed ``[column token, row token]``,
      summing to 1.

    Raises:
      ValueError: ``name`` unknown or ``vocab`` not an int >= 2.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flowjax_fm.data._token_toys import grid_token_probs
      >>> p = grid_token_probs("checkerboard", 4)  # cells of side 2: the squares themselves
      >>> (p * 8).round(3).tolist()
      [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
      >>> round(float(grid_token_probs("moons", 16).sum()), 5)
      1.0
    """
    name, vocab = _check_grid(name, vocab)
    return _grid_token_probs(name, vocab)


# -- the Markov digits -------------------------------------------------------------------------


def markov_chain(vocab: int = 10) -> tuple[jax.Array, jax.Array]:
    r"""The fixed Markov chain of :func:`markov_digits`: initial law and transition matrix.

    .. math::
       p(x^1 = a) = \frac1V, \qquad
       P(b \mid a) = \frac{\epsilon}{V} + (1 - \epsilon)\big[0.6\, 1\{b = a + 1\}
         + 0.4\, 1\{b = 2a\}\big] \pmod V,

    with :math:`\epsilon = 0.1`: mostly "count up by one" or "double", sometimes any digit.
    Every transition has probability at least :math:`\epsilon / V`, so every string has a
    finite log-likelihood; for ``V = 10`` a step has entropy about 1.1 nats (against
    :math:`\log 10 \approx 2.3` for random digits).

    Args:
      vocab: ``V``, an int >= 2.

    Returns:
      ``(initial, transition)``: ``float32`` arrays of shapes ``(V,)`` and ``(V, V)``
      (rows ``a``, columns ``b``, each row summing to 1).

    Raises:
      ValueError: ``vocab`` not an int >= 2.

    Examples:
      >>> from flowjax_fm.data._token_toys import markov_chain
      >>> init, trans = markov_chain(10)
      >>> [round(float(p), 2) for p in trans[3]]  # from 3: 4 (count up) or 6 (double) most of the time
      [0.01, 0.01, 0.01, 0.01, 0.55, 0.01, 0.37, 0.01, 0.01, 0.01]
    """
    vocab = check_int("vocab", vocab, 2)
    a = jnp.arange(vocab)
    step = jax.nn.one_hot((a + 1) % vocab, vocab)
    double = jax.nn.one_hot((2 * a) % vocab, vocab)
    trans = _EPS / vocab + (1.0 - _EPS) * (_W_STEP * step + _W_DOUBLE * double)
    return jnp.full((vocab,), 1.0 / vocab, jnp.float32), trans.astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _markov_digits(key, n, length, vocab):
    init, trans = markov_chain(vocab)
    k0, k_rest = jax.random.split(key)
    first = jax.random.categorical(k0, jnp.log(init), shape=(n,))

    def step(prev, k):
        nxt = jax.random.categorical(k, jnp.log(trans[prev]), axis=-1)
        return nxt, nxt

    _, rest = jax.lax.scan(step, first, jax.random.split(k_rest, length - 1))
    return jnp.concatenate([first[:, None], rest.T], axis=1).astype(jnp.int32)


def markov_digits(key: jax.Array, n: int, *, length: int = 16, vocab: int = 10) -> jax.Array:
    r"""Digit strings from the fixed Markov chain of :func:`markov_chain`.

    .. math:: x^1 \sim p(\cdot), \qquad x^{i+1} \sim P(\cdot \mid x^i), \quad i = 1, \dots, L - 1,

    independently for each of the ``n`` strings. A sequence task with an exact likelihood
    (:func:`markov_log_prob`): score a generator by the mean true log-likelihood of what it
    generates, against that of true strings (minus the chain's entropy), and by its
    transition statistics.

    Args:
      key: a ``jax.random.key``.
      n: the number of strings, an int >= 1 (static).
      length: ``L``, an int >= 1 (static).
      vocab: ``V``, an int >= 2 (static).

    Returns:
      ``int32`` tokens of shape ``(n, L)`` in ``[0, V)``.

    Raises:
      ValueError: ``n``, ``length`` or ``vocab`` out of range.

    Examples:
      >>> import jax
      >>> from flowjax_fm.data._token_toys import markov_digits
      >>> x = markov_digits(jax.random.key(0), 4, length=8)
      >>> x.shape, x.dtype, bool(((x >= 0) & (x < 10)).all())
      ((4, 8), dtype('int32'), True)
    """
    n = check_positive_int("n", n)
    length = check_positive_int("length", length)
    vocab = check_int("vocab", vocab, 2)
    return _markov_digits(key, n, length, vocab)


def markov_log_prob(x: jax.Array, *, vocab: int = 10) -> jax.Array:
    r"""Exact log-likelihood of token strings under the chain of :func:`markov_digits`.

    .. math:: \log p(x) = \log p(x^1) + \sum_{i=1}^{L-1} \log P(x^{i+1} \mid x^i).

    Its mean over true strings estimates minus the entropy of the length-``L`` chain; a
    generator's strings should score the same (higher means it favours likely strings, lower
    that it makes unlikely transitions).

    Args:
      x: integer tokens ``(B, L)`` in ``[0, V)``.
      vocab: ``V``, an int >= 2.

    Returns:
      ``float32`` log-likelihoods of shape ``(B,)``.

    Raises:
      ValueError: ``x`` not integer tokens ``(B, L)`` with ``B, L >= 1``, or (when concrete)
        tokens outside ``[0, V)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flowjax_fm.data._token_toys import markov_log_prob
      >>> x = jnp.array([[3, 4, 5], [3, 6, 2]])  # two likely strings
      >>> [round(float(v), 3) for v in markov_log_prob(x)]  # log(1/10) + 2 log(0.55), log(1/10) + 2 log(0.37)
      [-3.498, -4.291]
    """
    vocab = check_int("vocab", vocab, 2)
    shape, dtype = tuple(np.shape(x)), jnp.result_type(x)
    if len(shape) != 2 or 0 in shape or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"x must be integer tokens of shape (B, L), got shape {shape} and dtype {dtype}")
    if is_concrete(x):
        v = np.asarray(x)
        if v.min() < 0 or v.max() >= vocab:
            raise ValueError(f"x must lie in [0, {vocab}) (vocab), got tokens from {v.min()} to {v.max()}")
    init, trans = markov_chain(vocab)
    x = jnp.asarray(x)
    log_init = jnp.log(init)[x[:, 0]]
    log_steps = jnp.log(trans)[x[:, :-1], x[:, 1:]]
    return log_init + jnp.sum(log_steps, axis=1)
