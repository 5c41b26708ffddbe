r"""Sample quality for labelled images: a small CNN classifier, its accuracy, a Frechet distance.

The classifier plays the role Inception plays for FID on natural images: trained once on
the real training images, its penultimate layer gives the feature space in which generated
and held-out real images are compared, and its predictions say whether a class-conditional
sample shows its class.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from flowjax_fm._checks import (
    check_batched,
    check_finite,
    check_int,
    check_labels,
    check_real,
)
from flowjax_fm.models._classifier import DigitClassifier

__all__ = [
    "DigitClassifier",
    "classifier_accuracy",
    "classifier_features",
    "frechet_distance",
    "load_classifier",
    "save_classifier",
    "train_digit_classifier",
    "train_or_load_classifier",
]


def _check_key(key) -> None:
    ok = isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32 and key.shape == (2,))
    )
    if not ok:
        raise TypeError(f"key must be a JAX random key (jax.random.key(seed)), got {type(key).__name__}")


def _check_model(model) -> None:
    if not isinstance(model, DigitClassifier):
        raise TypeError(f"model must be a DigitClassifier, got {type(model).__name__}")


def _check_path(name: str, path) -> None:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike path, got {type(path).__name__}")


def _images(x, image_shape=None) -> np.ndarray:
    """``x`` as real images ``(N, H, W, C)`` (of ``image_shape`` when given), checked."""
    arr = np.asarray(x)
    real = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if arr.dtype == np.bool_ or not (real or arr.dtype.name == "bfloat16"):
        raise ValueError(f"x must be real images, got dtype {arr.dtype} and shape {arr.shape}")
    check_batched("x", arr, min_ndim=4, what="(N, H, W, C)")
    if arr.ndim != 4:
        raise ValueError(f"x must be images of shape (N, H, W, C), got shape {arr.shape}")
    if image_shape is not None and tuple(arr.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"the classifier was built for images {tuple(image_shape)}, got x of shape {arr.shape}"
        )
    arr = arr.astype(np.float32)
    check_finite("x", arr)
    return arr


def train_digit_classifier(
    key: jax.Array,
    x,
    y,
    *,
    num_classes: int | None = None,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    noise: float = 0.1,
) -> DigitClassifier:
    r"""Train a :class:`DigitClassifier` on labelled images with Adam (cross-entropy).

    Inputs get Gaussian noise of standard deviation ``noise`` during training (a little
    robustness to the slight blur and noise of generated samples).

    Args:
      key: a ``jax.random.key`` (initialisation and batches).
      x: real, finite images ``(N, H, W, C)``; y: integer labels ``(N,)`` in
        ``[0, num_classes)``.
      num_classes: number of classes, an int >= 1 (default ``max(y) + 1``).
      steps, batch_size: training steps and batch size, ints >= 1.
      lr: Adam's learning rate, finite > 0; noise: input noise, finite >= 0.

    Returns:
      the trained classifier.

    Raises:
      ValueError: any argument out of range, images not ``(N, H, W, C)`` real and finite,
        labels not integers of shape ``(N,)`` in range.
      TypeError: ``key`` is not a JAX random key.

    Examples:
      >>> import jax
      >>> import flowjax_fm as fm
      >>> x, y = fm.data.load_digits()
      >>> clf = train_digit_classifier(jax.random.key(0), x[:500], y[:500], steps=100)
      >>> classifier_accuracy(clf, x[1500:], y[1500:]) > 0.8
      True
    """
    _check_key(key)
    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    check_real("lr", lr, 0.0, low_open=True)
    check_real("noise", noise, 0.0)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, 1)
    x = jnp.asarray(_images(x))
    y = np.asarray(y)
    check_labels("y", y, batch=x.shape[0], num_classes=num_classes)
    y = jnp.asarray(y, jnp.int32)
    k = int(jnp.max(y)) + 1 if num_classes is None else num_classes
    k_init, k_train = jax.random.split(key)
    model = DigitClassifier(
        tuple(x.shape[1:]), k, rngs=nnx.Rngs(int(jax.random.randint(k_init, (), 0, 2**31 - 1)))
    )
    graphdef, params = nnx.split(model)
    opt = optax.adam(lr)

    def loss_fn(params, xb, yb):
        logits = nnx.merge(graphdef, params)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(state, key, x0, x1, labels):
        # the loop's source is N(0, I) noise shaped like the images: the input noise
        loss, grads = jax.value_and_grad(loss_fn)(state.params, x1 + noise * x0, labels)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        new = dataclasses.replace(state, params=optax.apply_updates(state.params, updates),
                                  opt_state=opt_state, step=state.step + 1)
        return new, {"loss": loss}

    from flowjax_fm.training import fit, init_state

    state, _ = fit(step, init_state(params, opt), k_train, None, (x, y), num_steps=steps,
                   batch_size=batch_size, progress=False, chunk_size=max(steps, 1))
    return nnx.merge(graphdef, state.params)


def _batched(fn, x, batch: int = 1024) -> np.ndarray:
    x = jnp.asarray(x, jnp.float32)
    return np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])


def classifier_features(model: DigitClassifier, x) -> np.ndarray:
    """Penultimate-layer features ``(N, feature_dim)`` of images ``x`` (float64 NumPy).

    Raises:
      TypeError: ``model`` is not a :class:`DigitClassifier`.
      ValueError: ``x`` not real, finite images of the model's shape ``(N, H, W, C)``.
    """
    _check_model(model)
    x = _images(x, model.image_shape)
    graphdef, params = nnx.split(model)
    f = jax.jit(lambda p, xb: nnx.merge(graphdef, p).features(xb))
    return _batched(lambda xb: f(params, xb), x).astype(np.float64)


def classifier_accuracy(model: DigitClassifier, x, labels) -> float:
    r"""Fraction of images ``x`` that ``model`` assigns to ``labels``: :math:`\frac1N\sum 1[\hat y_i = y_i]`.

    Raises:
      TypeError: ``model`` is not a :class:`DigitClassifier`.
      ValueError: ``x`` not real, finite images of the model's shape; ``labels`` not
        integers of shape ``(N,)`` in ``[0, num_classes)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> clf = DigitClassifier((8, 8, 1), 10, rngs=nnx.Rngs(0))
      >>> 0.0 <= classifier_accuracy(clf, jnp.zeros((4, 8, 8, 1)), jnp.arange(4)) <= 1.0
      True
    """
    _check_model(model)
    x = _images(x, model.image_shape)
    labels = np.asarray(labels)
    check_labels("labels", labels, batch=x.shape[0], num_classes=model.head.out_features)
    graphdef, params = nnx.split(model)
    f = jax.jit(lambda p, xb: jnp.argmax(nnx.merge(graphdef, p)(xb), axis=-1))
    pred = _batched(lambda xb: f(params, xb), x)
    return float(np.mean(pred == labels))


def frechet_distance(feats_a, feats_b) -> float:
    r"""Frechet distance between Gaussians fitted to two feature sets (FID's formula).

    .. math::
       d^2 = \|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b
             - 2 (\Sigma_a \Sigma_b)^{1/2}\big)

    Args:
      feats_a, feats_b: features ``(N_a, D)`` and ``(N_b, D)``, each with ``N >= 2``.

    Returns:
      :math:`d^2` as a float (the squared distance, as FID reports it).

    Raises:
      ValueError: not two 2D sets with the same ``D`` and ``N >= 2``, or NaN / inf in either.

    Examples:
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> a = rng.normal(size=(4000, 3)); b = rng.normal(size=(4000, 3)) + [2.0, 0, 0]
      >>> abs(frechet_distance(a, b) - 4.0) < 0.25  # squared mean shift 2^2, same covariances
      True
    """
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"need two feature sets (N, D) with the same D and N >= 2, got {a.shape} and {b.shape}"
        )
    check_finite("feats_a", a)
    check_finite("feats_b", b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr (S_a S_b)^{1/2} = sum of sqrt eigenvalues of the PSD matrix S_a^{1/2} S_b S_a^{1/2}:
    # symmetric eigendecompositions, stable for the singular covariances of ReLU features
    w_a, u_a = np.linalg.eigh(cov_a)
    root_a = (u_a * np.sqrt(np.clip(w_a, 0.0, None))) @ u_a.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    tr_covmean = np.sum(np.sqrt(np.clip(inner, 0.0, None)))
    d2 = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_covmean
    return float(max(d2, 0.0))


def save_classifier(model: DigitClassifier, path: str | os.PathLike) -> None:
    """Save the classifier's parameters to an ``.npz`` file (arrays only, no pickle).

    NumPy appends ``.npz`` to a ``path`` without it; :func:`load_classifier` needs the name
    with the suffix.

    Raises:
      TypeError: ``model`` is not a :class:`DigitClassifier` or ``path`` not a path.
    """
    _check_model(model)
    _check_path("path", path)
    _, params = nnx.split(model)
    flat = {
        ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in kp): np.asarray(v)
        for kp, v in jax.tree_util.tree_leaves_with_path(params)
    }
    meta = np.array(
        [*model.image_shape, model.head.out_features, model.hidden.out_features,
         model.conv1.out_features],
        np.int64,
    )
    np.savez(path, __meta__=meta, **flat)


def load_classifier(path: str | os.PathLike) -> DigitClassifier:
    """Rebuild a classifier saved by :func:`save_classifier` (read with ``allow_pickle=False``).

    Raises:
      TypeError: ``path`` is not a str or path.
      FileNotFoundError: no file at ``path``.
      ValueError: the file is not a classifier saved by :func:`save_classifier`.
    """
    _check_path("path", path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no classifier file at {str(path)!r}")
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(path)!r} is not a classifier saved by save_classifier: {err}") from None
    if not hasattr(f, "files") or "__meta__" not in f.files:
        getattr(f, "close", lambda: None)()
        raise ValueError(f"{str(path)!r} is not a classifier saved by save_classifier (no __meta__ entry)")
    with f:
        h, w, c, k, feat, width = (int(v) for v in f["__meta__"])
        model = DigitClassifier((h, w, c), k, width=width, feature_dim=feat, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(model)
        paths = [
            ".".join(str(getattr(k_, "key", getattr(k_, "idx", k_))) for k_ in kp)
            for kp, _ in jax.tree_util.tree_leaves_with_path(params)
        ]
        leaves = [jnp.asarray(f[p]) for p in paths]
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves)
    return nnx.merge(graphdef, params)


def train_or_load_classifier(
    directory: str | os.PathLike, key: jax.Array, x, y, **kwargs
) -> DigitClassifier:
    """Load ``directory/classifier.npz`` if present, else train on ``(x, y)`` and save it there.

    So a run directory trains its evaluation classifier once; later evaluations (other
    guidance scales, ``sample_images``) reuse the same one. ``kwargs`` go to
    :func:`train_digit_classifier` (and are checked there, before any training).

    Raises:
      TypeError: ``directory`` not a str or path; as :func:`train_digit_classifier`.
      ValueError: as :func:`load_classifier` or :func:`train_digit_classifier`.
    """
    _check_path("directory", directory)
    path = Path(directory) / "classifier.npz"
    if path.is_file():
        return load_classifier(path)
    model = train_digit_classifier(key, x, y, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_classifier(model, path)
    return model
