r"""Data-parallel drivers: one step body, run by ``pmap`` or by ``shard_map`` over a mesh.

Both take the **global** batch ``(B, *event)``, split it evenly over the devices, and draw
bitwise the same pairs, times and noise as the single-device step on the same global batch;
the parameters agree up to float summation order (close after 20 steps, drifting apart with
training: a sample difference of 3e-2 after 300 steps in 2D). Per-example randomness is
keyed by the global example index; the coupling is solved in its own program before the
sharded step, on the global batch (``coupling_scope="global"``) or per device slice; and
gradients are averaged exactly once. Multi-host runs use the same drivers over a mesh of all
processes' devices after :func:`initialize_distributed`.
"""

from __future__ import annotations

import math
import os

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from flowjax_fm._checks import check_int, check_real, is_int
from flowjax_fm.training._step import TrainStep

__all__ = ["data_mesh", "shard_step", "pmap_step", "initialize_distributed", "replicate"]


def data_mesh(num_devices: int | None = None, axis_name: str = "data") -> jax.sharding.Mesh:
    """A one-axis mesh over the first ``num_devices`` devices (default: all, every process).

    The axis is ``Auto`` (``jax.make_mesh`` defaults to ``Explicit``), so arrays are resharded
    onto it by the compiler where needed.

    Args:
      num_devices: ``None`` (all devices) or an int in ``[1, len(jax.devices())]``.
      axis_name: the mesh axis name, a non-empty str.

    Raises:
      ValueError: ``num_devices`` not an int in that range, or an empty ``axis_name``.
      TypeError: ``axis_name`` not a str.

    Examples:
      >>> data_mesh(1).shape
      OrderedDict([('data', 1)])
    """
    devices = jax.devices()
    _check_axis_name(axis_name)
    if num_devices is None:
        n = len(devices)
    else:
        try:
            n = check_int("num_devices", num_devices, 1, len(devices))
        except ValueError as err:
            raise ValueError(f"{err} ({len(devices)} device(s) available)") from None
    return jax.make_mesh(
        (n,), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n]
    )


def replicate(tree, mesh: jax.sharding.Mesh):
    """Place every array of ``tree`` on all devices of ``mesh`` (replaces ``device_put_replicated``).

    Raises:
      TypeError: ``mesh`` not a ``jax.sharding.Mesh``.

    Examples:
      >>> import jax.numpy as jnp
      >>> replicate({"w": jnp.ones(2)}, data_mesh(1))["w"].sharding.is_fully_replicated
      True
    """
    _check_mesh(mesh)
    return jax.device_put(tree, NamedSharding(mesh, P()))


def _check_axis_name(axis_name) -> None:
    if not isinstance(axis_name, str):
        raise TypeError(f"axis_name must be a str, got {type(axis_name).__name__}")
    if not axis_name:
        raise ValueError("axis_name must be a non-empty str, got ''")


def _check_mesh(mesh) -> None:
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (fm.training.data_mesh()), got {type(mesh).__name__}"
        )


def _check_step(step) -> None:
    if not isinstance(step, TrainStep):
        raise TypeError(
            f"the data-parallel drivers wrap a step from make_train_step (a TrainStep), got "
            f"{type(step).__name__}: a step of your own can run inside your own shard_map/pmap "
            "with make_train_step(..., axis_name=...)"
        )


def _check_divisible(x0, n: int) -> None:
    if x0.shape[0] % n:
        raise ValueError(
            f"the global batch {x0.shape[0]} is not divisible by the device count {n}"
        )


def _check_bool_paired(paired) -> None:
    if paired is not False and paired is not True:
        raise ValueError(f"paired must be a bool, got {paired!r}")


def _pair_program(step: TrainStep, shards: int):
    """``jit`` of ``(key, x0, x1, cond) -> (x0, x1, cond)`` re-ordered by the step's pairing."""
    from flowjax_fm.training._step import apply_pairing

    def pair(key, x0, x1, cond=None):
        return apply_pairing(step.pairing(key, x0, x1, cond, shards=shards), x0, x1, cond)

    return jax.jit(pair)


def shard_step(step: TrainStep, mesh: jax.sharding.Mesh):
    """Run ``step`` data-parallel with ``shard_map`` over the (one) axis of ``mesh``, jitted.

    Parameters and optimiser state are replicated, the batch is split along its first axis.
    The pairing runs in its own compiled program before the split (see
    :meth:`TrainStep.pairing`): with ``coupling_scope="global"`` one coupling on the global
    batch, with ``"per_shard"`` one per device slice; the sharded step then trains on the
    re-ordered batch.
    Under ``shard_map`` the gradient of replicated parameters arrives already summed over the
    axis, so the step divides it by the device count instead of taking a ``pmean``.

    Returns:
      ``f(state, key, x0, x1, cond=None, *, paired=False) -> (state, metrics)`` on global
      arrays; ``paired=True`` takes a batch already re-ordered by
      :meth:`TrainStep.pairing` with ``shards=f.pairing_shards`` (1 for the global scope,
      the device count for ``per_shard``), as :func:`~flowjax_fm.training.fit` does with
      ``pairing="prefetch"``.

    Raises:
      TypeError: ``step`` not a :class:`TrainStep` or ``mesh`` not a ``jax.sharding.Mesh``.
      ValueError: a mesh of more than one axis; when called, a global batch not divisible
        by the device count.

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)); opt = optax.sgd(0.1)
      >>> step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath())
      >>> f = shard_step(step, data_mesh(1))
      >>> x = jax.random.normal(jax.random.key(0), (4, 2))
      >>> int(f(fm.training.init_state(model, opt), jax.random.key(1), x, x + 1)[0].step)
      1
    """
    _check_step(step)
    _check_mesh(mesh)
    if len(mesh.axis_names) != 1:
        raise ValueError(f"shard_step takes a one-axis data mesh, got axes {mesh.axis_names}")
    axis = mesh.axis_names[0]
    n = mesh.shape[axis]
    body = step.for_axis(axis, "shard_map")
    shards = 1 if step.coupling_scope == "global" else n

    def mapped(has_cond):
        specs = (P(), P(), P(axis), P(axis)) + ((P(axis),) if has_cond else ())
        fn = lambda s, k, a, b, *c: body(s, k, a, b, *c, paired=True)
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=(P(), P()))

    maps = {False: mapped(False), True: mapped(True)}

    @jax.jit
    def train(state, key, x0, x1, cond=None):
        _check_divisible(x0, n)
        if cond is None:
            return maps[False](state, key, x0, x1)
        return maps[True](state, key, x0, x1, cond)

    # The pairing (one OT problem on the global view, or one per shard) runs in its own
    # program: a host callback and the step's collectives in one program can starve
    # XLA:CPU's shared thread pool when many (fake) CPU devices wait in a rendezvous while one
    # runs the callback. Inside an outer jit (``fit``'s scan with pairing="in_step") the two
    # are traced into one program anyway; fit's pairing="prefetch" keeps them apart.
    pair = _pair_program(step, shards)

    def run(state, key, x0, x1, cond=None, *, paired=False):
        _check_divisible(x0, n)
        _check_bool_paired(paired)
        if not paired:
            x0, x1, cond = pair(key, x0, x1, cond)
        return train(state, key, x0, x1, cond)

    run.train_step = step  # fit reads the model (its num_classes) and the pairing through it
    run.pairing_shards, run.num_devices = shards, n
    return run


def pmap_step(step: TrainStep, *, axis_name: str = "batch", devices=None):
    """Run ``step`` data-parallel with ``jax.pmap`` over the local devices.

    The global batch is reshaped to ``(n, B / n, *event)``; state and key are broadcast in
    and the (identical) updated state comes back unmapped. Gradients are ``pmean``-ed once.

    Returns:
      ``f(state, key, x0, x1, cond=None, *, paired=False) -> (state, metrics)`` on global
      arrays; ``paired=True`` takes a batch already re-ordered by
      :meth:`TrainStep.pairing` with ``shards=f.pairing_shards`` (1 for the global scope,
      the device count for ``per_shard``), as :func:`~flowjax_fm.training.fit` does with
      ``pairing="prefetch"``.

    Raises:
      TypeError: ``step`` not a :class:`TrainStep` or ``axis_name`` not a str.
      ValueError: ``devices`` not a non-empty list of jax devices; when called, a global
        batch not divisible by the device count.

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)); opt = optax.sgd(0.1)
      >>> step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath())
      >>> f = pmap_step(step, devices=jax.devices()[:1])
      >>> x = jax.random.normal(jax.random.key(0), (4, 2))
      >>> int(f(fm.training.init_state(model, opt), jax.random.key(1), x, x + 1)[0].step)
      1
    """
    _check_step(step)
    _check_axis_name(axis_name)
    devices = list(devices) if devices is not None else jax.local_devices()
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(f"devices must be a non-empty list of jax devices, got {devices!r:.80}")
    n = len(devices)
    body = step.for_axis(axis_name, "pmap")
    shards = 1 if step.coupling_scope == "global" else n
    mapped = jax.pmap(
        lambda s, k, a, b, c: body(s, k, a, b, c, paired=True),
        axis_name=axis_name, in_axes=(None, None, 0, 0, 0), out_axes=(None, None), devices=devices,
    )
    pair = _pair_program(step, shards)  # in its own program, before the split (see shard_step)

    def run(state, key, x0, x1, cond=None, *, paired=False):
        _check_divisible(x0, n)
        _check_bool_paired(paired)
        if not paired:
            x0, x1, cond = pair(key, x0, x1, cond)
        split = lambda a: a.reshape(n, a.shape[0] // n, *a.shape[1:])
        return mapped(state, key, split(x0), split(x1), jax.tree.map(split, cond))

    run.train_step = step  # fit reads the model (its num_classes) and the pairing through it
    run.pairing_shards, run.num_devices = shards, n
    return run


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = 120.0,
) -> bool:
    """Start JAX's multi-host runtime from arguments or the environment.

    Reads ``FLOWJAX_COORDINATOR``, ``FLOWJAX_NUM_PROCESSES`` and ``FLOWJAX_PROCESS_ID`` when an
    argument is ``None``. On CPU it selects the gloo collectives (needed for cross-process
    collectives there). Returns False (and does nothing) when no coordinator is given.

    Args:
      coordinator: ``"host:port"`` (port 1-65535) of process 0, or ``None``.
      num_processes: an int ``>= 1``.
      process_id: an int in ``[0, num_processes)``.
      timeout: seconds to wait for the coordinator, finite in ``(0, inf)``.

    Raises:
      ValueError: a coordinator that is not ``host:port``, ``num_processes`` not an int
        ``>= 1`` (or an environment value that is not one), a process id outside
        ``[0, num_processes)``, a ``timeout`` that is not a positive number, or a
        coordinator that does not answer within ``timeout`` seconds (instead of waiting for
        ever).

    Examples:
      >>> initialize_distributed(None)  # no coordinator (and none in the environment)
      False
    """
    if coordinator is not None and not isinstance(coordinator, str):
        raise ValueError(f"the coordinator must be a str host:port, got {coordinator!r}")
    coordinator = coordinator or os.environ.get("FLOWJAX_COORDINATOR")
    if not coordinator:
        return False
    if num_processes is None:
        num_processes = _env_int("FLOWJAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("FLOWJAX_PROCESS_ID")
    if num_processes is None or process_id is None:
        raise ValueError("a coordinator needs --num-processes and --process-id as well")
    num_processes = check_int("num_processes", num_processes, 1)
    if not is_int(process_id) or not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id!r} is outside [0, {num_processes})")
    process_id = int(process_id)
    # cross-process collectives on the CPU backend need gloo (no effect on GPU/TPU backends)
    host, colon, port = coordinator.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the coordinator must be host:port (port 1-65535), got {coordinator!r}")
    try:
        timeout = float(check_real("timeout", timeout, 0.0, low_open=True))
    except ValueError as err:
        raise ValueError(f"the coordinator {err} (seconds)") from None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
            initialization_timeout=max(int(math.ceil(timeout)), 1),
        )
    except Exception as err:  # jax raises runtime errors of several kinds here
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"could not join the coordinator {coordinator} as process {process_id} of "
            f"{num_processes} within {timeout:g} s: {first[:300]}"
        ) from None
    return True


def _env_int(name: str) -> int | None:
    """The int in environment variable ``name`` (``None`` when unset or empty)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an int, got {text!r}") from None
