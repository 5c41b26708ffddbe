"""Worker: train with checkpoints, then die by SIGKILL in the middle of the second save.

Usage: python kill_during_save.py RUN_DIR
The first checkpoint (step 100) completes; the save of step 200 is started and the process
kills itself before orbax has finalised it (and before its sha256.json is written).
"""

import os
import signal
import sys

os.environ["JAX_PLATFORMS"] = "cpu"

import flowjax_fm as fm  # noqa: E402
from flowjax_fm.training import _checkpoint  # noqa: E402

real_save = _checkpoint.Checkpointer.save
saves = []


def dying_save(self, state, *, force=True):
    saves.append(int(state.step))
    if len(saves) == 1:
        return real_save(self, state, force=force)
    # start the save (orbax writes asynchronously), then die before it can finish
    self._manager.save(int(state.step), args=self._ocp.args.StandardSave(state), force=force)
    os.kill(os.getpid(), signal.SIGKILL)


_checkpoint.Checkpointer.save = dying_save
config = fm.experiments.RunConfig(
    steps=300, chunk=100, checkpoint_every=100, devices=1, eval=fm.experiments.EvalConfig(samples=200)
)
fm.experiments.train_and_evaluate(config, sys.argv[1], progress=False)
