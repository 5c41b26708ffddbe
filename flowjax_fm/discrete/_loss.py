r"""Training objectives of discrete flow matching on a mixture path."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_choice
from flowjax_fm.discrete._path import MixtureDiscretePath, _per_row, check_logits, check_times, check_tokens

__all__ = ["mixture_kl_loss", "LOSS_KINDS"]

LOSS_KINDS = ("generalized_kl", "cross_entropy")


def check_path(path) -> None:
    if not isinstance(path, MixtureDiscretePath):
        raise TypeError(
            "path must be an fm.discrete.MixtureDiscretePath (e.g. "
            f"MixtureDiscretePath(fm.paths.CondOTSchedule())), got {type(path).__name__}"
        )


def _gather(log_p: jax.Array, x: jax.Array) -> jax.Array:
    """``log_p[..., x]``; a traced token outside ``[0, V)`` gives NaN, never a wrapped or zero entry."""
    vocab = log_p.shape[-1]
    safe = jnp.where((x < 0) | (x >= vocab), vocab, x)
    return jnp.take_along_axis(log_p, safe[..., None], axis=-1, mode="fill", fill_value=jnp.nan)[..., 0]


def mixture_kl_loss(
    logits: jax.Array,
    x1: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    *,
    path: MixtureDiscretePath,
    kind: str = "generalized_kl",
) -> jax.Array:
    r"""Discrete flow-matching loss of posterior logits on a mixture path.

    The model's logits give the factorised posterior :math:`p_{1|t}^i(\cdot \mid x_t) =
    \mathrm{softmax}(\text{logits}^i)`. ``kind="generalized_kl"`` is the generalized KL
    (Bregman divergence of :math:`u \log u`) between the conditional probability velocity
    :math:`u_t^i(y \mid x_t, x_1) = \lambda_t [\delta_{x_1^i}(y) - \delta_{x_t^i}(y)]` and the
    model's :math:`\lambda_t [p_{1|t}^i(y \mid x_t) - \delta_{x_t^i}(y)]`, summed over
    :math:`y \neq x_t^i`; per token

    .. math::
       \ell^i = -\lambda_t \Big[\, p_{1|t}^i(x_t^i \mid x_t) - \delta_{x_1^i}(x_t^i)
          + \big(1 - \delta_{x_1^i}(x_t^i)\big) \log p_{1|t}^i(x_1^i \mid x_t) \Big],
       \qquad \lambda_t = \frac{\dot\kappa_t}{1 - \kappa_t},

    which is nonnegative and, in expectation over :math:`x_1 \mid x_t`, minimised exactly by
    the true posterior. ``kind="cross_entropy"`` is :math:`\ell^i = -\log p_{1|t}^i(x_1^i
    \mid x_t)` (also minimised by the true posterior; no time weighting, so it does not blow
    up as :math:`t \to 1`).

    Reduction: the **mean** over the batch and all token positions (``B * L`` terms); for a
    per-row weighting, call it on slices or weight ``t`` accordingly. :math:`1 - \kappa_t` is
    clipped at 1e-6, so ``t = 1`` gives a large but finite weight; draw training times in
    ``[0, 1)``.

    Args:
      logits: float posterior logits of shape ``(B, L, V)`` (or ``(B, *event, V)``).
      x1: data tokens ``(B, L)`` in ``[0, V)``.
      x_t: tokens on the path (:meth:`MixtureDiscretePath.sample`), shape and range of ``x1``.
      t: times ``(B,)`` in ``[0, 1]``.
      path: the :class:`MixtureDiscretePath` that made ``x_t``.
      kind: ``"generalized_kl"`` (default) or ``"cross_entropy"``.

    Returns:
      A float scalar, at least ``float32`` (``bfloat16`` logits are promoted).

    Raises:
      TypeError: ``path`` is not a ``MixtureDiscretePath``.
      ValueError: an unknown ``kind``; logits not float ``(*x1.shape, V)``, tokens not integers
        of one shape or (when concrete) outside ``[0, V)``, ``t`` not ``(B,)`` (quoting the
        shapes).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> path = fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())
      >>> x1 = jnp.array([[0, 1, 2]])
      >>> x_t = jnp.array([[0, 3, 3]])  # 3 = mask token, V = 4
      >>> perfect = 30.0 * jax.nn.one_hot(x1, 4)  # sure of the right tokens
      >>> loss = fm.discrete.mixture_kl_loss(perfect, x1, x_t, jnp.array([0.5]), path=path)
      >>> abs(float(loss)) < 1e-6
      True
      >>> flat = jnp.zeros((1, 3, 4))  # p = 1/4: lambda = 2; [2 (1 - 1/4) + 2 * 2 (log 4 - 1/4)] / 3
      >>> round(float(fm.discrete.mixture_kl_loss(flat, x1, x_t, jnp.array([0.5]), path=path)), 4)
      2.0151

    References:
      Gat et al. 2024, Discrete Flow Matching; Lipman et al. 2024, Flow Matching Guide and
      Code (generalized KL for mixture paths); Shaul et al. 2024, Flow Matching with General
      Discrete Paths.
    """
    check_path(path)
    check_choice("kind", kind, LOSS_KINDS)
    vocab = check_logits(logits, x1, "x1")
    shape = check_tokens("x1", x1)
    check_tokens("x_t", x_t, vocab_size=vocab, shape=shape)
    check_times(t, shape[0])
    log_p = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    log_p_x1 = _gather(log_p, x1)
    if kind == "cross_entropy":
        return -jnp.mean(log_p_x1)
    p_xt = jnp.exp(_gather(log_p, x_t))
    same = x_t == x1
    rate = _per_row(path.jump_rate(t).astype(log_p.dtype), len(shape))
    # where, not (1 - delta) * log p: log p(x1) may be -inf (a masked-out token) where x_t = x1
    per_token = -rate * (p_xt - same.astype(log_p.dtype) + jnp.where(same, 0.0, log_p_x1))
    return jnp.mean(per_token)
