"""Worker for the multi-device tests: train 20 steps and save the parameters.

Usage: python train_params.py OUT.npz DRIVER N_DEVICES [PROCESS_ID NUM_PROCESSES PORT]

Trains once with independent and once with global exact-OT coupling (keys ``independent``,
``exact-ot`` in the npz: lists of parameter leaves).
DRIVER: jit | shard | pmap. Run as several processes for the multi-host check.
"""

import os
import sys

out, driver, n_dev = sys.argv[1], sys.argv[2], int(sys.argv[3])
multi = len(sys.argv) > 4
local = n_dev // int(sys.argv[5]) if multi else n_dev
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(local, 1)}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

if multi:
    fm.training.initialize_distributed(f"127.0.0.1:{sys.argv[6]}", int(sys.argv[5]), int(sys.argv[4]))



def train(coupling: str) -> list[np.ndarray]:
    model = fm.models.MLP(2, (32, 32), rngs=nnx.Rngs(0))
    opt = optax.adam(1e-2)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.get_coupling(coupling), ema_decay=0.9,
    )
    state = fm.training.init_state(model, opt)
    if driver == "jit":
        run = jax.jit(step)
    elif driver == "shard":
        mesh = fm.training.data_mesh(n_dev)
        run = fm.training.shard_step(step, mesh)
        state = fm.training.replicate(state, mesh)
    else:
        run = fm.training.pmap_step(step, devices=jax.devices()[:n_dev])
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    for i in range(20):
        k = jax.random.fold_in(jax.random.key(0), i)
        x0, x1 = src(jax.random.fold_in(k, 1), 64), tgt(jax.random.fold_in(k, 2), 64)
        state, _ = run(state, jax.random.fold_in(k, 3), x0, x1)
    return [np.asarray(a) for a in jax.tree.leaves(state.params)]


results = {c: train(c) for c in ("independent", "exact-ot")}
if jax.process_index() == 0:
    np.savez(out, **{f"{c}/{i}": a for c, leaves in results.items() for i, a in enumerate(leaves)})
if multi:
    jax.distributed.shutdown()
