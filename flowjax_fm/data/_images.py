"""Image data sets, channels-last: scikit-learn's 8x8 digits and ``.npy`` / ``.npz`` arrays."""

from __future__ import annotations

import os

import numpy as np

from flowjax_fm._checks import check_positive_int

__all__ = ["load_digits", "load_array_dataset", "check_images", "check_labels"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    r"""The 1797 8x8 handwritten digits bundled with scikit-learn, scaled to :math:`[-1, 1]`.

    Pixel values :math:`v \in \{0, \dots, 16\}` become :math:`x = v / 8 - 1`. The data ship
    inside scikit-learn (``sklearn.datasets.load_digits``): nothing is downloaded.

    Returns:
      ``(x, y)``: images ``(1797, 8, 8, 1)`` float32 and labels ``(1797,)`` int32 in 0..9.

    Raises:
      ImportError: if scikit-learn is not installed (it is in the ``test`` extra).

    Examples:
      >>> x, y = load_digits()
      >>> x.shape, x.dtype, float(x.min()), float(x.max()), y.shape, y.dtype
      ((1797, 8, 8, 1), dtype('float32'), -1.0, 1.0, (1797,), dtype('int32'))
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # pragma: no cover - sklearn is in the test extra
        raise ImportError(
            "fm.data.load_digits needs scikit-learn: pip install 'flowjax-fm[test]'"
        ) from err
    bunch = _sk_load_digits()
    x = (np.asarray(bunch.images, np.float32) / 8.0 - 1.0)[..., None]
    return x, np.asarray(bunch.target, np.int32)


def check_images(x: np.ndarray, *, divisor: int = 1, name: str = "images") -> None:
    """Raise a one-line ``ValueError`` unless ``x`` is a float ``(N, H, W, C)`` image batch.

    Checks: 4 dimensions, at least one image, a floating dtype, finite values, channels
    last (an axis 1 of size 1, 3 or 4 smaller than the last axis, or more channels than
    rows, is taken as channels-first), ``H`` and ``W`` divisible by ``divisor``.
    """
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be channels-last images shaped (N, H, W, C), got shape {x.shape}"
        )
    n, h, w, c = x.shape
    if n == 0:
        raise ValueError(f"{name}: no images (shape {x.shape})")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype} (shape {x.shape})")
    if (h in (1, 3, 4) and h < c) or c > h or c > w:
        raise ValueError(
            f"{name} of shape {x.shape} looks channels-first; give (N, H, W, C), e.g. "
            "np.moveaxis(x, 1, -1)"
        )
    if divisor > 1 and (h % divisor or w % divisor):
        raise ValueError(
            f"{name}: height and width must be divisible by {divisor}, got shape {x.shape}"
        )
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"{name}: {bad} non-finite values (nan or inf) in shape {x.shape}")


def check_labels(y: np.ndarray, n: int, num_classes: int | None = None) -> int:
    """Raise a one-line ``ValueError`` unless ``y`` is ``(n,)`` integer labels in range.

    Returns the number of classes (``num_classes``, or ``max(y) + 1`` when not given).
    """
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match the images, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"labels must lie in [0, {k - 1}], got values in [{lo}, {hi}]")
    return k


def _path_name(path) -> str:
    if not isinstance(path, str | os.PathLike) or (isinstance(path, str) and not path):
        raise TypeError(f"path must be a non-empty str or os.PathLike, got {path!r:.80}")
    return os.fspath(path)


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in native byte order (JAX takes no other), same values."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def load_array_dataset(
    path: str | os.PathLike, *, divisor: int = 1, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load channels-last images (and optional labels) from a ``.npy`` or ``.npz`` file.

    A ``.npy`` file holds the images only; an ``.npz`` archive holds ``x`` (images) and
    optionally ``y`` (integer labels). Files are read with ``allow_pickle=False``. Images must
    be ``(N, H, W, C)`` floating point; they are returned as float32, unscaled, in native byte
    order whatever the file's (a big-endian ``>f8`` file loads as native float32).

    Args:
      path: a ``.npy`` or ``.npz`` file (a str or path-like).
      divisor: ``H`` and ``W`` must be divisible by it (a UNet's ``2 ** (levels - 1)``), an
        int ``>= 1``.
      num_classes: labels must lie in ``[0, num_classes)``, ``None`` (default:
        ``max(y) + 1``) or an int ``>= 1``.

    Returns:
      ``(x, y)``: float32 images ``(N, H, W, C)`` and int32 labels ``(N,)`` or ``None``.

    Raises:
      TypeError: ``path`` not a str or path-like.
      ValueError: ``divisor`` or ``num_classes`` not an int ``>= 1``; with a one-line
        message naming the file: unreadable file, an ``.npz``
        without ``x``, images not 4D, not floating point, non-finite or channels-first
        ("looks channels-first"), a spatial size not divisible by ``divisor``, labels of the
        wrong length, not integers or out of range.

    Examples:
      >>> import os, tempfile
      >>> import numpy as np
      >>> path = os.path.join(tempfile.mkdtemp(), "imgs.npz")
      >>> np.savez(path, x=np.zeros((5, 8, 8, 1), np.float32), y=np.arange(5))
      >>> x, y = load_array_dataset(path)
      >>> x.shape, y.tolist()
      ((5, 8, 8, 1), [0, 1, 2, 3, 4])
      >>> np.save(path[:-4] + ".npy", np.zeros((5, 1, 8, 8), np.float32))
      >>> load_array_dataset(path[:-4] + ".npy")
      Traceback (most recent call last):
      ...
      ValueError: ...: images of shape (5, 1, 8, 8) looks channels-first; ...
    """
    divisor = check_positive_int("divisor", divisor)
    if num_classes is not None:
        num_classes = check_positive_int("num_classes", num_classes)
    name = _path_name(path)
    try:
        loaded = np.load(name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        msg = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{name}: cannot read a .npy / .npz array ({msg})") from err
    if isinstance(loaded, np.ndarray):
        x, y = loaded, None
    else:
        with loaded:
            if "x" not in loaded.files:
                raise ValueError(f"{name}: an .npz needs an array 'x', found {loaded.files}")
            x = loaded["x"]
            y = loaded["y"] if "y" in loaded.files else None
    x = _native(x)
    y = None if y is None else _native(y)
    try:
        check_images(x, divisor=divisor)
        if y is not None:
            check_labels(y, x.shape[0], num_classes)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return x.astype(np.float32, copy=False), None if y is None else y.astype(np.int32, copy=False)
