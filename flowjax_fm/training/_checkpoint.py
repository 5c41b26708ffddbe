"""Checkpoints and parameter files through orbax: atomic, checksummed, no pickle.

Two formats live here:

* :class:`Checkpointer`: periodic checkpoints of a whole :class:`TrainState` (params,
  optimiser state, EMA, step), restored against an abstract target; :meth:`restore_params`
  reads the params (or the EMA) alone, without the optimiser. Each step directory also holds
  ``sha256.json`` (each array leaf's path, shape, dtype and sha256), checked on restore.
* :func:`save_params` / :func:`load_params`: one parameter pytree (or an EMA) with a JSON
  metadata dict beside it, for handing a trained model on. The directory holds
  ``params.json`` (format, metadata, each leaf's path, shape, dtype and sha256) and
  ``arrays/`` (an orbax PyTree checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_bool, check_int, check_positive_int

__all__ = ["CheckpointDamagedError", "Checkpointer", "load_params", "save_params", "write_json_atomic"]

_FORMAT = "flowjax_fm.params"
_VERSION = 1
_MANIFEST = "params.json"
_ARRAYS = "arrays"
_SHOW = 5  # differing paths quoted in an error message
_SUMS = "sha256.json"  # per-step leaf checksums of a Checkpointer, inside DIR/<step>/
_SUMS_FORMAT = "flowjax_fm.checkpoint_sha256"


class CheckpointDamagedError(ValueError):
    """A saved checkpoint cannot be read, or an array differs from its recorded sha256."""


def _umask() -> int:
    """The process umask, read without changing it (Linux), else set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_path(name: str, value) -> Path:
    """``value`` as a :class:`~pathlib.Path`; a TypeError unless it is a str or path-like."""
    if not isinstance(value, str | os.PathLike) or (isinstance(value, str) and not value):
        raise TypeError(f"{name} must be a non-empty str or os.PathLike path, got {value!r:.80}")
    return Path(value)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename.

    The file gets the mode an ordinary ``open(path, "w")`` would give it, ``0o666 & ~umask``
    (``0o644`` under the usual umask ``022``: readable by the group), not the ``0o600`` of a
    :func:`tempfile.mkstemp` file. ``obj`` is encoded before anything is written, so an
    object JSON cannot store leaves no file behind. Keys are sorted; a float ``nan`` /
    ``inf`` is written as Python's ``json`` writes it (``NaN``, ``Infinity``).

    Raises:
      TypeError: ``path`` not a str or path-like, or ``obj`` holding something JSON cannot
        store (the message names its type).

    Examples:
      >>> import json, pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "run" / "metrics.json"
      >>> write_json_atomic(path, {"loss": 0.5, "steps": 10})
      >>> json.loads(path.read_text())
      {'loss': 0.5, 'steps': 10}
    """
    path = _as_path("path", path)
    try:
        text = json.dumps(obj, indent=2, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"cannot write {path.name}: obj is not JSON-serialisable ({err})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- pytree paths -------------------------------------------------------------------------


def _is_variable(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Variable)


def _key_name(key) -> str | int:
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(key, attr):
            name = getattr(key, attr)
            return name if isinstance(name, int | str) else str(name)
    return str(key)


def _flatten(tree, *, variables_as_values: bool = True) -> list[tuple[tuple, Any]]:
    """``[(names, leaf)]`` in ``jax.tree.leaves`` order; names are the path's keys.

    With ``variables_as_values`` an ``nnx.Variable`` contributes its value's path and not
    a trailing ``value`` attribute, so an ``nnx.State`` and ``nnx.to_pure_dict`` of it agree.
    """
    if not variables_as_values:
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return [(tuple(_key_name(k) for k in path), leaf) for path, leaf in flat]
    out = []
    for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_variable)[0]:
        names = tuple(_key_name(k) for k in path)
        if not _is_variable(node):
            out.append((names, node))
            continue
        for sub, leaf in jax.tree_util.tree_flatten_with_path(node)[0]:
            sub_names = tuple(_key_name(k) for k in sub)
            if sub_names[:1] == ("value",):
                sub_names = sub_names[1:]
            out.append((names + sub_names, leaf))
    return out


def _show(names) -> str:
    return "/".join(str(n) for n in names) or "<root>"


def _spec(leaf) -> tuple[tuple[int, ...], str] | None:
    """``(shape, dtype)`` of an array or abstract array leaf, ``None`` for anything else."""
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        return None
    try:
        dtype = str(jnp.dtype(leaf.dtype))
    except TypeError:
        dtype = str(leaf.dtype)
    return tuple(int(s) for s in leaf.shape), dtype


def _fmt(spec) -> str:
    shape, dtype = spec
    return f"{shape} {dtype}"


def _prefixes(paths) -> set:
    return {names[:i] for names in paths for i in range(1, len(names) + 1)}


def _absent(side: dict, other: dict, where: str, noun: str) -> list[tuple[tuple, str]]:
    """Paths of ``side`` missing from ``other``, grouped under the shortest absent prefix."""
    present = _prefixes(other)
    groups: dict[tuple, list] = {}
    for names, spec in side.items():
        if names in other:
            continue
        prefix = next((names[:i] for i in range(1, len(names) + 1) if names[:i] not in present), names)
        groups.setdefault(prefix, []).append((names, spec))
    lines = []
    for prefix, members in groups.items():
        if len(members) == 1 and members[0][0] == prefix:
            lines.append((prefix, f"{_show(prefix)}: in {where} ({_fmt(members[0][1])}), not in {noun}"))
        else:
            lines.append((prefix, f"{_show(prefix)}/...: {len(members)} arrays in {where}, not in {noun}"))
    return lines


def _differences(saved: dict, wanted: dict, what: str, saved_as: str) -> list[str]:
    """One line per differing shape or dtype, then per missing subtree (sorted by path)."""
    lines = [
        f"{_show(names)}: saved {_fmt(saved[names])}, {what} {_fmt(spec)}"
        for names, spec in wanted.items()
        if names in saved and saved[names] != spec
    ]
    missing = _absent(wanted, saved, what, saved_as) + _absent(saved, wanted, saved_as, what)
    return lines + [line for _, line in sorted(missing, key=lambda m: m[0])]


def _raise_if_different(saved: dict, wanted: dict, where: str, what: str, saved_as: str) -> None:
    lines = _differences(saved, wanted, what, saved_as)
    if lines:
        more = f"\n  ... and {len(lines) - _SHOW} more" if len(lines) > _SHOW else ""
        raise ValueError(
            f"{where} does not match {what}: {len(lines)} difference(s):\n  "
            + "\n  ".join(lines[:_SHOW])
            + more
        )


def _by_str(entries) -> dict:
    """``{names as strings: spec}``: an int key ``0`` and orbax's ``"0"`` are the same path."""
    return {tuple(str(n) for n in names): spec for names, spec in entries}


# --- JSON metadata ------------------------------------------------------------------------


def _check_json(value, where: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(
                    f"{where} has the key {k!r} of type {type(k).__name__}: JSON keys are strings"
                )
            _check_json(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}: JSON has no NaN or infinity")
    elif not (value is None or isinstance(value, str | int)):
        raise ValueError(
            f"{where} is a {type(value).__name__} ({value!r:.60}), which JSON cannot store; "
            "convert it (int(x), float(x), x.tolist(), str(x))"
        )


def _digest(body: dict) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _array_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8)).hexdigest()


# --- save_params / load_params ------------------------------------------------------------


def _host_leaves(params) -> list[tuple[tuple, np.ndarray]]:
    entries = _flatten(params)
    if not entries:
        raise ValueError("params has no array leaves: there is nothing to save")
    out, seen = [], set()
    for names, leaf in entries:
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            raise TypeError(
                f"params leaf {_show(names)} is a {type(leaf).__name__}, not an array; save "
                "arrays only (for an equinox model: eqx.filter(model, eqx.is_array))"
            )
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise TypeError(f"params leaf {_show(names)} is a PRNG key array; save jax.random.key_data(key)")
        key = tuple(str(n) for n in names)
        if key in seen:
            raise ValueError(f"two params leaves share the path {_show(names)}")
        seen.add(key)
        out.append((names, np.asarray(jax.device_get(leaf))))
    return out


def _is_params_save(directory: Path) -> bool:
    try:
        with open(directory / _MANIFEST) as f:
            return json.load(f).get("format") == _FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(directory: Path, overwrite: bool) -> None:
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    if not any(directory.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{directory} exists and is not empty; pass overwrite=True to replace an earlier "
            "params save, or choose another directory"
        )
    if not _is_params_save(directory):
        raise FileExistsError(
            f"{directory} is not empty and is not a params save (no {_MANIFEST} of format "
            f"{_FORMAT!r}); refusing to replace it, even with overwrite=True"
        )


def _move_into_place(tmp: Path, directory: Path) -> None:
    if not directory.exists() or not any(directory.iterdir()):
        os.replace(tmp, directory)  # a missing or empty target: one atomic rename
        return
    old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
    os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except BaseException:
        os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_params(
    directory: str | os.PathLike,
    params,
    metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Save a parameter pytree (or an EMA) alone, with a JSON metadata dict beside it.

    ``params`` is any pytree of arrays: a Flax NNX ``nnx.State`` (``nnx.split(model,
    nnx.Param, ...)[1]``), an equinox model's arrays (``eqx.filter(model, eqx.is_array)``),
    a Linen variables dict, or ``state.params`` / ``state.ema`` of a :class:`TrainState`.
    The arrays go through orbax (array files, no pickle); ``params.json`` records the format,
    ``metadata``, and each leaf's path, shape, dtype and sha256 of its bytes, so that
    :func:`load_params` detects a corrupted file. Everything is written into a temporary
    sibling directory first and renamed into place: a process killed mid-save leaves no
    half-written ``directory``.

    Args:
      directory: where to save; created (with its parents) if missing.
      params: a pytree whose leaves are arrays (jax or numpy; ``nnx.Variable`` nodes allowed).
      metadata: a JSON-able dict (str keys; str, int, float, bool, None, lists and dicts),
        e.g. ``{"model": "MLP", "dim": 2, "hidden": [64, 64, 64]}``. Tuples load as lists.
      overwrite: replace ``directory`` if it already holds a params save. A non-empty
        directory that is not a params save is never replaced.

    Raises:
      ValueError: if ``metadata`` is not JSON-serialisable (naming the offending key),
        ``params`` has no leaves, or ``overwrite`` is not a bool.
      TypeError: if ``directory`` is not a path, ``metadata`` is not a dict, or a leaf of
        ``params`` is not an array.
      FileExistsError: if ``directory`` is not empty and ``overwrite`` is false, or it is
        not empty and not a params save.

    Examples:
      >>> import tempfile, numpy as np
      >>> from flowjax_fm.training._checkpoint import load_params, save_params
      >>> d = tempfile.mkdtemp() + "/mlp"
      >>> save_params(d, {"dense": {"kernel": np.eye(2, dtype=np.float32)}}, {"dim": 2})
      >>> params, metadata = load_params(d)
      >>> params["dense"]["kernel"].shape, metadata
      ((2, 2), {'dim': 2})
    """
    import orbax.checkpoint as ocp

    directory = _as_path("directory", directory).absolute()
    overwrite = check_bool("overwrite", overwrite)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    _check_json(metadata, "metadata")
    leaves = _host_leaves(params)
    _check_target(directory, overwrite)
    body = {
        "format": _FORMAT,
        "version": _VERSION,
        "metadata": json.loads(json.dumps(metadata)),
        "leaves": [
            {
                "path": list(names),
                "shape": list(a.shape),
                "dtype": str(jnp.dtype(a.dtype)),
                "sha256": _array_digest(a),
            }
            for names, a in leaves
        ],
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0o700 would hide the save from the group
        with ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save(tmp / _ARRAYS, args=ocp.args.PyTreeSave([a for _, a in leaves]))
        write_json_atomic(tmp / _MANIFEST, {**body, "sha256": _digest(body)})
        _move_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_manifest(directory: Path) -> dict:
    if not directory.exists():
        raise FileNotFoundError(f"no params save at {directory}: the directory does not exist")
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a params save: it is a file, not a directory")
    if not (directory / _MANIFEST).exists():
        found = sorted(p.name for p in directory.iterdir())
        hint = ""
        if any(name.isdigit() for name in found):
            hint = "; it looks like a Checkpointer directory: use Checkpointer(...).restore_params"
        raise ValueError(f"{directory} is not a params save: it has no {_MANIFEST} (found {found[:8]}){hint}")
    try:
        with open(directory / _MANIFEST) as f:
            manifest = json.load(f)
    except ValueError as e:
        raise ValueError(f"{directory / _MANIFEST} is corrupt: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError(f"{directory} is not a params save: {_MANIFEST} is not of format {_FORMAT!r}")
    if manifest.get("version", 0) > _VERSION:
        raise ValueError(
            f"{directory} was saved by a newer flowjax_fm (format version {manifest['version']}, "
            f"this one reads up to {_VERSION})"
        )
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    try:
        ok = _digest(body) == manifest.get("sha256")
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{directory / _MANIFEST} is corrupt: its checksum does not match")
    return manifest


def _nested(entries: list[tuple[tuple, Any]]):
    if len(entries) == 1 and entries[0][0] == ():
        return entries[0][1]
    out: dict = {}
    for names, leaf in entries:
        node = out
        for n in names[:-1]:
            node = node.setdefault(n, {})
            if not isinstance(node, dict):
                raise ValueError(f"corrupt params save: {_show(names)} lies below a leaf")
        node[names[-1]] = leaf
    return out


def _like_leaf(a: np.ndarray, ref):
    if isinstance(ref, np.ndarray | np.generic):
        return a
    sharding = getattr(ref, "sharding", None)
    return jax.device_put(a, sharding) if sharding is not None else jnp.asarray(a)


def load_params(directory: str | os.PathLike, like=None):
    """Load a parameter pytree and its metadata saved by :func:`save_params`.

    Every leaf's bytes are checked against the sha256 recorded at save time, and the
    metadata file against its own checksum: a flipped bit raises instead of loading.

    Without ``like``, the result is plain nested dicts of jax arrays, keyed as the saved
    pytree's paths (an ``nnx.State`` loads as ``nnx.to_pure_dict(state)``, so
    ``nnx.replace_by_pure_dict(state, params)`` puts it back; a list index is an int key).
    With ``like`` (a pytree of the saved kind: an ``nnx.State``, an equinox model or its
    ``eqx.filter(model, eqx.is_array)``, a dict; leaves may be arrays or
    ``jax.ShapeDtypeStruct``), the result has ``like``'s structure and type, each array
    placed like ``like``'s leaf (its sharding; numpy stays numpy). Leaves of ``like`` that
    are not arrays (an equinox model's activation functions) are kept as they are.

    Args:
      directory: a directory written by :func:`save_params`.
      like: optional template pytree; paths, shapes and dtypes must match the save.

    Returns:
      ``(params, metadata)``: the pytree and the metadata dict (``{}`` if none was saved).

    Raises:
      FileNotFoundError: if ``directory`` does not exist.
      TypeError: if ``directory`` is not a str or path-like.
      ValueError: if it is not a params save, is corrupt (a checksum differs or the arrays
        cannot be read), or ``like`` differs from the save (the first differing paths,
        with both shapes and dtypes, are listed).

    Examples:
      >>> import tempfile, jax.numpy as jnp
      >>> from flowjax_fm.training._checkpoint import load_params, save_params
      >>> d = tempfile.mkdtemp() + "/p"
      >>> save_params(d, {"w": jnp.ones((2, 3))})
      >>> load_params(d, like={"w": jnp.zeros((2, 3))})[0]["w"].sum().item()
      6.0
      >>> load_params(d, like={"w": jnp.zeros((3, 2))})
      Traceback (most recent call last):
      ...
      ValueError: .../p does not match `like`: 1 difference(s):
        w: saved (2, 3) float32, `like` (3, 2) float32
    """
    import orbax.checkpoint as ocp

    directory = _as_path("directory", directory).absolute()
    manifest = _read_manifest(directory)
    try:
        specs = [
            (tuple(e["path"]), (tuple(int(s) for s in e["shape"]), str(e["dtype"])))
            for e in manifest["leaves"]
        ]
        digests = [str(e["sha256"]) for e in manifest["leaves"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory / _MANIFEST} is corrupt: bad leaf entry ({e})") from None
    if like is not None:
        like_entries = [(n, leaf) for n, leaf in _flatten(like) if _spec(leaf) is not None]
        _raise_if_different(
            _by_str(specs),
            _by_str((n, _spec(leaf)) for n, leaf in like_entries),
            str(directory),
            "`like`",
            "the save",
        )
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            arrays = checkpointer.restore(
                directory / _ARRAYS,
                args=ocp.args.PyTreeRestore(
                    item=[np.zeros(0)] * len(specs),
                    restore_args=[ocp.RestoreArgs(restore_type=np.ndarray)] * len(specs),
                ),
            )
    except Exception as e:  # orbax / tensorstore: missing or unreadable array files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ValueError(
            f"{directory} is corrupt or incomplete: its arrays cannot be read ({type(e).__name__}: {first})"
        ) from e
    if len(arrays) != len(specs):
        raise ValueError(f"{directory} is corrupt: {len(arrays)} arrays for {len(specs)} leaves")
    for (names, spec), digest, a in zip(specs, digests, arrays, strict=True):
        if _spec(a) != spec or _array_digest(a) != digest:
            raise ValueError(
                f"{directory} is corrupt: leaf {_show(names)} does not match the checksum "
                "recorded at save time"
            )
    metadata = manifest.get("metadata") or {}
    if like is None:
        return _nested([(n, jnp.asarray(a)) for (n, _), a in zip(specs, arrays, strict=True)]), metadata
    by_name = {tuple(str(n) for n in names): a for (names, _), a in zip(specs, arrays, strict=True)}
    leaves = [
        leaf if _spec(leaf) is None else _like_leaf(by_name[tuple(str(n) for n in names)], leaf)
        for names, leaf in _flatten(like)
    ]
    return jax.tree.unflatten(jax.tree.structure(like), leaves), metadata


# --- whole train states -------------------------------------------------------------------


def _params_template(like):
    from flowjax_fm.training._model import _is_equinox, _is_nnx, params_of

    return params_of(like) if _is_nnx(like) or _is_equinox(like) else like


def _host_copy(leaf) -> np.ndarray | None:
    """A leaf's values on the host, or ``None`` for a leaf that is not checksummed.

    Not checksummed: non-array leaves, PRNG key arrays, and arrays sharded over processes
    (this process cannot see all of their values). A replicated array is read from its
    local copy.
    """
    if _spec(leaf) is None:
        return None
    if isinstance(leaf, jax.Array):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return None
        if not leaf.is_fully_addressable:
            if not leaf.sharding.is_fully_replicated:
                return None
            leaf = leaf.addressable_data(0)
        return np.asarray(jax.device_get(leaf))
    if isinstance(leaf, np.ndarray | np.generic):
        return np.asarray(leaf)
    return None


def _leaf_sums(tree) -> list[dict]:
    """``[{path, shape, dtype, sha256}]`` of a pytree's array leaves, keyed by their raw paths.

    ``sha256`` is ``None`` for an array this process cannot read whole (see :func:`_host_copy`).
    """
    out = []
    for names, leaf in _flatten(tree, variables_as_values=False):
        spec = _spec(leaf)
        if spec is None:
            continue
        host = _host_copy(leaf)
        out.append(
            {
                "path": [str(n) for n in names],
                "shape": list(spec[0]),
                "dtype": spec[1],
                "sha256": None if host is None else _array_digest(host),
            }
        )
    return out


class Checkpointer:
    """Periodic, atomic, checksummed checkpoints of a :class:`TrainState` (orbax ``CheckpointManager``).

    Orbax writes each step into a temporary directory and renames it when complete, so a
    process killed mid-save leaves the previous complete checkpoint as the latest one.
    Restoring needs an abstract target (shapes and dtypes), and reads array files only:
    nothing is unpickled. :meth:`restore` checks the target against the checkpoint first
    and names the paths that differ; :meth:`restore_params` reads the params (or the EMA)
    alone, without the optimiser.

    Once orbax has finished a step, :meth:`save` writes ``DIR/<step>/sha256.json`` (process 0
    only, through an atomic rename): each array leaf's path, shape, dtype and the sha256 of
    its bytes. :meth:`restore`, :meth:`restore_params` and :meth:`verify` check what they read
    against it and raise :class:`CheckpointDamagedError` on a mismatch, and also when orbax
    cannot read the step's files (truncated, missing, bad metadata). A checkpoint without
    ``sha256.json`` (written before checksums were recorded) restores without the check.

    Examples:
      >>> import tempfile, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (4,), rngs=nnx.Rngs(0))
      >>> state = fm.training.init_state(model, optax.sgd(0.1))
      >>> ckpt = Checkpointer(tempfile.mkdtemp())
      >>> ckpt.save(state)
      >>> int(ckpt.restore(state).step), ckpt.latest_step()
      (0, 0)
      >>> params = ckpt.restore_params(nnx.split(model, nnx.Param, ...)[1], ema=True)
      >>> params["out"]["kernel"].shape
      (4, 2)
      >>> ckpt.verify()  # reads every array and checks its recorded sha256

    Args:
      directory: where the step directories live (created if missing), a str or path.
      max_to_keep: how many of the newest checkpoints to keep, an int ``>= 1``, or ``None``
        to keep all.

    Raises:
      TypeError: ``directory`` not a str or path-like.
      ValueError: ``max_to_keep`` not ``None`` or an int ``>= 1``.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 2):
        import orbax.checkpoint as ocp

        path = _as_path("directory", directory)
        if max_to_keep is not None:
            max_to_keep = check_positive_int("max_to_keep", max_to_keep)
        self._ocp = ocp
        self.directory = path.absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            # named, so that a fresh Checkpointer reads item_metadata of steps it did not save
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def save(self, state, *, force: bool = True) -> None:
        """Save ``state`` under its step number, wait until it is on disk, then record its sha256s.

        Raises:
          TypeError: ``state`` without an integer ``step`` counter.
          ValueError: ``force`` not a bool.
        """
        force = check_bool("force", force)
        if not hasattr(state, "step"):
            raise TypeError(f"Checkpointer.save takes a TrainState (with a step), got {type(state).__name__}")
        step = int(jax.device_get(state.step))
        saved = self._manager.save(step, args=self._ocp.args.StandardSave(state), force=force)
        self._manager.wait_until_finished()
        if not saved:  # orbax skipped this step: the sums on disk (if any) are not this state's
            return
        if jax.process_index() == 0:
            body = {"format": _SUMS_FORMAT, "version": 1, "step": step, "leaves": _leaf_sums(state)}
            write_json_atomic(self.directory / str(step) / _SUMS, {**body, "sha256": _digest(body)})
        if jax.process_count() > 1:  # nobody restores this step before its sums are there
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"flowjax_fm checkpoint sha256 {step}")

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or ``None``."""
        self._manager.reload()
        return self._manager.latest_step()

    def _step(self, step: int | None) -> int:
        if step is not None:
            step = check_int("step", step, 0)
        latest = self.latest_step()
        if step is None:
            if latest is None:
                raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
            return latest
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint of step {step} in {self.directory} (steps: "
                f"{sorted(self._manager.all_steps())})"
            )
        return step

    def _damaged(self, step: int, what: str) -> CheckpointDamagedError:
        return CheckpointDamagedError(f"checkpoint step {step} in {self.directory} is damaged: {what}")

    def _unreadable(self, step: int, err: BaseException) -> CheckpointDamagedError:
        """The damage message for an orbax / tensorstore read error: its root cause's first line."""
        root = err
        for _ in range(8):  # orbax wraps tensorstore's precise error ("OUT_OF_RANGE: ...")
            if root.__cause__ is None:
                break
            root = root.__cause__
        lines = [line.strip() for line in str(root).splitlines() if line.strip()]
        first = lines[0].split(" See full TensorStore details")[0] if lines else ""
        first = first if len(first) <= 300 else first[:297] + "..."
        return self._damaged(step, f"its files cannot be read ({type(root).__name__}: {first})")

    def _saved_tree(self, step: int):
        try:
            meta = self._manager.item_metadata(step)
        except Exception as err:  # orbax / tensorstore: unreadable _METADATA
            raise self._unreadable(step, err) from err
        tree = getattr(meta, "tree", meta)
        if tree is None:  # StandardSave always writes it
            raise self._damaged(step, "its orbax metadata (default/_METADATA) is missing")
        return tree

    def _read_sums(self, step: int) -> dict[tuple[str, ...], dict] | None:
        """``{path: entry}`` from ``DIR/<step>/sha256.json``; ``None`` if the step has none."""
        path = self.directory / str(step) / _SUMS
        try:
            with open(path) as f:
                sums = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise self._damaged(step, f"its {_SUMS} cannot be read ({type(err).__name__})") from err
        body = {k: v for k, v in sums.items() if k != "sha256"} if isinstance(sums, dict) else None
        try:
            ok = body is not None and body.get("format") == _SUMS_FORMAT and _digest(body) == sums["sha256"]
            entries = {tuple(str(n) for n in e["path"]): e for e in body["leaves"]} if ok else {}
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise self._damaged(step, f"its {_SUMS} does not match its own checksum")
        return entries

    def _verify(self, step: int, leaves, sums) -> None:
        """Check ``[(raw path, leaf)]`` read from ``step`` against its recorded sums."""
        if sums is None:
            return
        for names, leaf in leaves:
            if _spec(leaf) is None:
                continue
            entry = sums.get(tuple(str(n) for n in names))
            if entry is None:
                raise self._damaged(step, f"{_show(names)} has no recorded sha256 in its {_SUMS}")
            host = _host_copy(leaf)
            if host is None or entry["sha256"] is None:  # sharded over processes (then or now)
                continue
            recorded = (tuple(entry["shape"]), entry["dtype"])
            if _spec(host) != recorded or _array_digest(host) != entry["sha256"]:
                raise self._damaged(step, f"{_show(names)} does not match its recorded sha256")

    def _check(self, step: int, saved, like, what: str) -> None:
        saved_specs = _by_str(
            (n, s) for n, leaf in _flatten(saved, variables_as_values=False) if (s := _spec(leaf)) is not None
        )
        like_specs = _by_str(
            (n, s) for n, leaf in _flatten(like, variables_as_values=False) if (s := _spec(leaf)) is not None
        )
        _raise_if_different(
            saved_specs,
            like_specs,
            f"checkpoint step {step} in {self.directory}",
            what,
            "the checkpoint",
        )

    def restore(self, like, step: int | None = None):
        """Restore the checkpoint at ``step`` (default: latest) into the structure of ``like``.

        Args:
          like: a :class:`TrainState` (arrays or ``jax.ShapeDtypeStruct`` leaves) with the
            same params, optimiser state and EMA structure as the saved one.
          step: the step to restore; default the latest.

        Raises:
          FileNotFoundError: if there is no complete checkpoint (of ``step``).
          CheckpointDamagedError: (a ``ValueError``) if the step's files cannot be read, or
            an array differs from the sha256 recorded when it was saved.
          ValueError: if ``like`` differs from the checkpoint (another optimiser, other
            shapes): one message listing the first differing paths with both shapes; or
            ``step`` not ``None`` or an int ``>= 0``.
        """
        step = self._step(step)
        sums = self._read_sums(step)
        self._check(step, self._saved_tree(step), like, "`like`")
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
        except Exception as err:  # orbax / tensorstore: missing, truncated or undecodable files
            raise self._unreadable(step, err) from err
        self._verify(step, _flatten(restored, variables_as_values=False), sums)
        return restored

    def _read_arrays(self, step: int, item, restore_args, *, partial: bool):
        ocp = self._ocp
        path = self.directory / str(step) / "default"
        try:
            with ocp.PyTreeCheckpointer() as checkpointer:
                return checkpointer.restore(
                    path,
                    args=ocp.args.PyTreeRestore(
                        item=item, restore_args=restore_args, partial_restore=partial
                    ),
                )
        except Exception as err:  # orbax / tensorstore: missing, truncated or undecodable files
            raise self._unreadable(step, err) from err

    def restore_params(self, like_params, step: int | None = None, *, ema: bool = False):
        """Read only the params (or, with ``ema=True``, the EMA) of a saved :class:`TrainState`.

        The optimiser state is neither read nor needed: restore a model trained with any
        optimiser from ``like_params`` alone. What is read is checked against the sha256s
        recorded at save time, as in :meth:`restore`.

        Args:
          like_params: a params pytree of the saved structure (``state.params``,
            ``nnx.split(model, nnx.Param, ...)[1]``, arrays or ``jax.ShapeDtypeStruct``),
            or the model itself (an NNX or equinox module: its parameters as
            :func:`init_state` takes them).
          step: the step to read; default the latest.
          ema: read the EMA instead of the params.

        Returns:
          The params (or EMA) in the structure of ``like_params``.

        Raises:
          FileNotFoundError: if there is no complete checkpoint (of ``step``).
          CheckpointDamagedError: (a ``ValueError``) if the step's files cannot be read, or
            an array differs from its recorded sha256.
          ValueError: if ``like_params`` differs from the saved params (paths, shapes, dtypes);
            ``step`` not ``None`` or an int ``>= 0``; ``ema`` not a bool.
        """
        ocp = self._ocp
        ema = check_bool("ema", ema)
        step = self._step(step)
        field = "ema" if ema else "params"
        like_params = _params_template(like_params)
        sums = self._read_sums(step)
        saved = self._saved_tree(step)
        if not isinstance(saved, Mapping) or field not in saved:
            top = sorted(saved) if isinstance(saved, Mapping) else type(saved).__name__
            raise ValueError(
                f"checkpoint step {step} in {self.directory} has no {field!r} entry "
                f"(it holds {top}); is it a TrainState checkpoint?"
            )
        self._check(step, saved[field], like_params, f"`like_params` ({field})")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_params)
        out = self._read_arrays(
            step,
            {field: abstract},
            {field: ocp.checkpoint_utils.construct_restore_args(abstract)},
            partial=True,
        )[field]
        leaves = [((field, *names), leaf) for names, leaf in _flatten(out, variables_as_values=False)]
        self._verify(step, leaves, sums)
        return out

    def verify(self, step: int | None = None) -> None:
        """Read every array of the checkpoint at ``step`` (default: latest) and check its sha256.

        No template is needed: the arrays are read as NumPy arrays in the saved structure
        (as costly as a restore, without placing anything on a device). A checkpoint without
        ``sha256.json`` (saved before checksums were recorded) is only checked to be readable.

        Args:
          step: the step to check; default the latest.

        Raises:
          FileNotFoundError: if there is no complete checkpoint (of ``step``).
          CheckpointDamagedError: (a ``ValueError``) if the step's files cannot be read, or
            an array differs from its recorded sha256, or a recorded array is missing.
          ValueError: ``step`` not ``None`` or an int ``>= 0``.
        """
        step = self._step(step)
        sums = self._read_sums(step)
        saved = self._saved_tree(step)
        restore_args = jax.tree.map(lambda _: self._ocp.RestoreArgs(restore_type=np.ndarray), saved)
        arrays = self._read_arrays(step, None, restore_args, partial=False)
        leaves = _flatten(arrays, variables_as_values=False)
        self._verify(step, leaves, sums)
        if sums is not None:
            read = {tuple(str(n) for n in names) for names, _ in leaves}
            missing = [names for names in sums if names not in read]
            if missing:
                raise self._damaged(step, f"{_show(missing[0])} is recorded in its {_SUMS} but was not read")

    def close(self) -> None:
        self._manager.close()
