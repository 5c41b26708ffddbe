"""A run's data: the source and target named in its config, loaded and checked once.

A name is a toy of :mod:`flowjax_fm.data`, ``"digits"``, ``"normal"`` (N(0, I) shaped like the
target) or a file. Files are referred to by absolute path and sha256, so a run directory does
not depend on the working directory and notices when its data changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Task", "absolute_spec", "draw", "file_ref", "load_task", "source_log_prob"]

_FILE_SUFFIXES = (".npy", ".npz")


def is_file_spec(spec: str) -> bool:
    return spec.endswith(_FILE_SUFFIXES)


def absolute_spec(spec: str) -> str:
    """A file name made absolute (against the working directory now); other names as they are."""
    return str(Path(spec).expanduser().absolute()) if is_file_spec(spec) else spec


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_ref(spec: str) -> dict:
    """What ``run.json`` records of a data name: the name, and for a file its sha256."""
    if not is_file_spec(spec):
        return {"spec": spec}
    path = Path(spec)
    try:
        return {"spec": spec, "sha256": _sha256(path)}
    except OSError as err:
        raise ValueError(f"{spec}: cannot read it ({err.strerror or err})") from None


def check_ref(ref: dict, what: str) -> None:
    """Raise if a recorded data file is gone or changed since the run was trained."""
    if "sha256" not in ref:
        return
    spec = ref["spec"]
    if not Path(spec).is_file():
        raise ValueError(f"the run's {what} file {spec} is gone")
    if _sha256(Path(spec)) != ref["sha256"]:
        raise ValueError(
            f"the run's {what} file {spec} changed since training (sha256 differs from run.json)"
        )


@dataclasses.dataclass(frozen=True)
class Task:
    """The data of a run, as :func:`flowjax_fm.training.fit` takes it.

    ``source`` is a sampler ``(key, n) -> x0``, an array, or ``None`` (N(0, I) like the
    target); ``target`` a sampler, an array or ``(x, labels)``; ``x_test`` / ``y_test`` the
    held-out images of an image run.
    """

    kind: str
    event_shape: tuple[int, ...]
    num_classes: int | None
    source: Any
    target: Any
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    extra: dict | None = None  # family runs: the manifold, or the vocabulary and exact law

    @property
    def target_x(self):
        return self.target[0] if isinstance(self.target, tuple) else self.target


def _divisor(config) -> int:
    return 2 ** (len(config.model.channel_mult) - 1) if config.model.name in (None, "unet") else 1


def task_kind(target: str) -> str:
    """``"images"`` or ``"points"``, from the target name (a file: from its array's rank)."""
    from flowjax_fm import data
    from flowjax_fm.experiments._families import family_kind

    if target == "digits":
        return "images"
    if family_kind(target):
        return family_kind(target)
    if not is_file_spec(target):
        if target not in data.TOY_NAMES:
            raise ValueError(
                f"unknown target {target!r}: give 'digits', a .npy/.npz file or one of "
                f"{sorted(data.TOY_NAMES)}, or a manifold / token toy: sphere-vmf, torus-mixture, "
                "checkerboard-tokens, moons-tokens, markov-digits"
            )
        return "points"
    if target.endswith(".npz"):
        return "images"
    try:
        arr = np.load(target, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{target}: cannot read a .npy array ({' '.join(str(err).split())})") from None
    if family_kind(target, arr):
        return family_kind(target, arr)
    return "images" if arr.ndim == 4 else "points"


def _split(n: int, test_fraction: float):
    """A fixed train / held-out split (seed 0, whatever the run's seed)."""
    perm = np.random.default_rng(0).permutation(n)
    n_test = max(int(round(n * test_fraction)), 2)
    if n - n_test < 2:
        raise ValueError(f"{n} images are too few to hold out {test_fraction} of them")
    return perm[n_test:], perm[:n_test]


def _load_source(spec: str, event_shape):
    from flowjax_fm import data

    if spec == "normal":
        return None
    if is_file_spec(spec):
        x = data.load_points(spec).astype(np.float32)
        if tuple(x.shape[1:]) != tuple(event_shape):
            raise ValueError(
                f"source {spec} has events of shape {tuple(x.shape[1:])}, the target {tuple(event_shape)}"
            )
        return jnp.asarray(x)
    if spec not in data.TOY_NAMES:
        raise ValueError(
            f"unknown source {spec!r}: give 'normal', a .npy file or one of {sorted(data.TOY_NAMES)}"
        )
    if tuple(event_shape) != (2,):
        raise ValueError(f"the toy source {spec!r} is 2D; the target's events are {tuple(event_shape)}")
    return data.make_sampler(spec)


def load_task(config, kind: str) -> Task:
    """Load and check the source and target of a resolved ``config``."""
    from flowjax_fm import data
    from flowjax_fm.experiments._families import FAMILY_KINDS, load_family

    if kind in FAMILY_KINDS:
        return load_family(config, kind)
    if kind == "images":
        if config.target == "digits":
            x, y = data.load_digits()
            data._images.check_images(x, divisor=_divisor(config), name="digits")
        else:
            x, y = data.load_array_dataset(config.target, divisor=_divisor(config))
        train, test = _split(len(x), config.eval.test_fraction)
        num_classes = None if y is None else int(y.max()) + 1
        event_shape = tuple(int(s) for s in x.shape[1:])
        target = jnp.asarray(x[train]) if y is None else (jnp.asarray(x[train]), jnp.asarray(y[train]))
        return Task(
            kind,
            event_shape,
            num_classes,
            _load_source(config.source, event_shape),
            target,
            x_test=x[test],
            y_test=None if y is None else y[test],
        )
    if is_file_spec(config.target):
        target = jnp.asarray(data.load_points(config.target).astype(np.float32))
        event_shape = tuple(target.shape[1:])
    else:
        target = data.make_sampler(config.target)
        event_shape = (2,)
    return Task(kind, event_shape, None, _load_source(config.source, event_shape), target)


def draw(source, key: jax.Array, n: int, event_shape) -> np.ndarray:
    """``n`` points of a sampler, an array (without replacement, at most its size) or N(0, I)."""
    if source is None:
        return np.asarray(jax.random.normal(key, (n, *event_shape), jnp.float32))
    if callable(source):
        return np.asarray(source(key, n))
    source = source[0] if isinstance(source, tuple) else source
    count = min(n, source.shape[0])
    idx = np.asarray(jax.random.choice(key, source.shape[0], (count,), replace=False))
    return np.asarray(source[idx])


def source_log_prob(spec: str, event_shape):
    """``log p0`` of a source with a closed-form density, or a ``ValueError`` saying why not."""
    from flowjax_fm import data, likelihood

    if spec == "normal":
        return likelihood.standard_normal_log_prob
    if is_file_spec(spec) or os.sep in spec:
        raise ValueError(
            f"the run's source {spec} is a set of points with no density: log-likelihoods need a "
            "source with a closed form (normal, gaussian, 8gaussians)"
        )
    try:
        return data.toy_log_prob(spec)
    except ValueError as err:
        raise ValueError(f"loglik needs the source density: {err}") from None
