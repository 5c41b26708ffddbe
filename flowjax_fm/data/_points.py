"""Point sets from ``.npy`` files, checked once on load."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_points"]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def load_points(path: str | os.PathLike) -> np.ndarray:
    """Loads a set of points of shape ``(N, *event)`` from a ``.npy`` file.

    The file is read with ``np.load(path, allow_pickle=False)`` (no code runs on load) and
    checked: one floating-point array, at least 2 dimensions, at least one point, a non-empty
    event, only finite values. The array is returned with the file's floating dtype (cast it
    with ``.astype(np.float32)`` for JAX's default precision), in native byte order: a
    big-endian file (``x.astype(">f4")``) gives the same values as a native ``float32``
    array, which JAX accepts.

    Args:
      path: path of a ``.npy`` file (as written by ``np.save``).

    Returns:
      the points, a NumPy array of shape ``(N, *event)`` with ``N >= 1``.

    Raises:
      TypeError: if ``path`` is not a str or path-like.
      ValueError: with a one-line message naming the file, if it cannot be read (missing,
        not a ``.npy`` file, an ``.npz`` archive, pickled objects), its dtype is not floating
        point (integers, booleans, complex), it has fewer than 2 dimensions, holds no points
        or an empty event, or contains ``nan`` / ``inf``.

    Examples:
      >>> import os, tempfile
      >>> import numpy as np
      >>> from flowjax_fm.data import load_points
      >>> path = os.path.join(tempfile.mkdtemp(), "points.npy")
      >>> np.save(path, np.zeros((10, 2), np.float32))
      >>> load_points(path).shape
      (10, 2)
      >>> np.save(path, np.ones((3, 2), ">f4"))  # big-endian
      >>> load_points(path).dtype.str
      '<f4'
      >>> np.save(path, np.arange(3))
      >>> load_points(path)
      Traceback (most recent call last):
      ...
      ValueError: ...: points must be floating point, got dtype int64 (shape (3,))
    """
    if not isinstance(path, str | os.PathLike) or (isinstance(path, str) and not path):
        raise TypeError(f"path must be a non-empty str or os.PathLike, got {path!r:.80}")
    name = os.fspath(path)
    try:
        arr = np.load(name, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{name}: cannot read a .npy array ({_one_line(err)})") from err
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise ValueError(f"{name}: expected a .npy file holding one array, got an .npz archive")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: points must be floating point, got dtype {arr.dtype} (shape {arr.shape})")
    if arr.ndim < 2:
        raise ValueError(
            f"{name}: points must have shape (N, *event) with at least 2 dimensions, got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: no points (shape {arr.shape})")
    if arr.size == 0:
        raise ValueError(f"{name}: empty event shape {arr.shape[1:]} (shape {arr.shape})")
    if not arr.dtype.isnative:  # JAX takes native byte order only
        arr = arr.astype(arr.dtype.newbyteorder("="))
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name}: {bad} non-finite values (nan or inf) in points of shape {arr.shape}")
    return arr
