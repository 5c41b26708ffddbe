"""Checkpoints through orbax: atomic, no pickle, restored against an abstract target."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax

__all__ = ["Checkpointer", "write_json_atomic"]


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Checkpointer:
    """Periodic, atomic checkpoints of a :class:`TrainState` (orbax ``CheckpointManager``).

    Orbax writes each step into a temporary directory and renames it when complete, so a
    process killed mid-save leaves the previous complete checkpoint as the latest one.
    Restoring needs an abstract target (shapes and dtypes), and reads array files only:
    nothing is unpickled.

    Examples:
      >>> import tempfile, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> state = fm.training.init_state(fm.models.MLP(2, (4,), rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> ckpt = Checkpointer(tempfile.mkdtemp())
      >>> ckpt.save(state)
      >>> int(ckpt.restore(state).step), ckpt.latest_step()
      (0, 0)
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, state, *, force: bool = True) -> None:
        """Save ``state`` under its step number and wait until it is on disk."""
        step = int(jax.device_get(state.step))
        self._manager.save(step, args=self._ocp.args.StandardSave(state), force=force)
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or ``None``."""
        self._manager.reload()
        return self._manager.latest_step()

    def restore(self, like, step: int | None = None):
        """Restore the checkpoint at ``step`` (default: latest) into the structure of ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
