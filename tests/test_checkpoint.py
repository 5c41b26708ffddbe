"""Parameters on disk: save_params / load_params, and Checkpointer's partial and checked restores."""

import dataclasses
import gc
import json
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.training import _checkpoint
from flowjax_fm.training._checkpoint import (
    CheckpointDamagedError,
    Checkpointer,
    load_params,
    save_params,
    write_json_atomic,
)


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _nnx_model(hidden=(8,), seed=0):
    return fm.models.MLP(2, hidden, rngs=nnx.Rngs(seed))


def _linen_dict():
    rng = np.random.default_rng(0)
    return {
        "params": {
            "Dense_0": {
                "kernel": rng.normal(size=(3, 4)).astype(np.float32),
                "bias": np.zeros(4, np.float32),
            },
            "Dense_1": {"kernel": jnp.ones((4, 2), jnp.float32), "bias": jnp.zeros(2)},
        },
        "batch_stats": {"count": np.arange(3, dtype=np.int32)},
    }


def test_nnx_state_round_trip(tmp_path):
    model = _nnx_model()
    _, params, _ = nnx.split(model, nnx.Param, ...)
    save_params(tmp_path / "p", params, {"model": "MLP", "dim": 2, "hidden": [8]})

    plain, _ = load_params(tmp_path / "p")
    _assert_trees_equal(plain, nnx.to_pure_dict(params))  # plain nested dicts, int list keys

    other = _nnx_model(seed=1)
    graphdef, like, rest = nnx.split(other, nnx.Param, ...)
    loaded, metadata = load_params(tmp_path / "p", like=like)
    assert type(loaded) is type(params)
    _assert_trees_equal(loaded, params)
    restored = nnx.merge(graphdef, loaded, rest)
    x, t = jnp.ones((3, 2)), jnp.full(3, 0.3)
    np.testing.assert_array_equal(restored(x, t), model(x, t))
    assert metadata == {"model": "MLP", "dim": 2, "hidden": [8]}


def test_equinox_round_trip(tmp_path):
    model = eqx.nn.MLP(2, 2, 8, 2, key=jax.random.key(0))
    save_params(tmp_path / "p", eqx.filter(model, eqx.is_array))
    fresh = eqx.nn.MLP(2, 2, 8, 2, key=jax.random.key(1))

    arrays, _ = load_params(tmp_path / "p", like=eqx.filter(fresh, eqx.is_array))
    assert isinstance(arrays, eqx.nn.MLP)
    restored = eqx.combine(arrays, eqx.filter(fresh, eqx.is_array, inverse=True))
    x = jnp.array([0.5, -1.0])
    np.testing.assert_array_equal(restored(x), model(x))

    whole, _ = load_params(tmp_path / "p", like=fresh)  # non-array leaves are kept
    np.testing.assert_array_equal(whole(x), model(x))

    plain, _ = load_params(tmp_path / "p")
    assert sorted(plain["layers"]) == [0, 1, 2]
    np.testing.assert_array_equal(plain["layers"][0]["weight"], model.layers[0].weight)


def test_linen_dict_round_trip_keeps_dtypes_and_leaf_kinds(tmp_path):
    params = _linen_dict()
    save_params(tmp_path / "p", params)
    plain, metadata = load_params(tmp_path / "p")
    _assert_trees_equal(plain, params)
    assert plain["batch_stats"]["count"].dtype == np.int32 and metadata == {}
    loaded, _ = load_params(tmp_path / "p", like=params)
    assert isinstance(loaded["params"]["Dense_0"]["kernel"], np.ndarray)  # numpy stays numpy
    assert isinstance(loaded["params"]["Dense_1"]["kernel"], jax.Array)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    _assert_trees_equal(load_params(tmp_path / "p", like=abstract)[0], params)


def test_metadata_round_trip(tmp_path):
    metadata = {
        "model": "MLP",
        "dim": 2,
        "hidden": [64, 64, 64],
        "lr": 1e-3,
        "note": None,
        "optim": {"name": "adam", "nesterov": False},
        "pair": (1, 2),
    }
    save_params(tmp_path / "p", {"w": jnp.ones(2)}, metadata)
    assert load_params(tmp_path / "p")[1] == {**metadata, "pair": [1, 2]}


@pytest.mark.parametrize(
    "metadata, match",
    [
        ({"optim": {"lr": np.float32(1e-3)}}, r"metadata\['optim'\]\['lr'\] is a float32"),
        ({"hidden": [64, jnp.int32(64)]}, r"metadata\['hidden'\]\[1\]"),
        ({"loss": float("nan")}, r"metadata\['loss'\] is nan"),
        ({"layers": {0: "a"}}, r"metadata\['layers'\] has the key 0"),
    ],
)
def test_metadata_must_be_json(tmp_path, metadata, match):
    with pytest.raises(ValueError, match=match):
        save_params(tmp_path / "p", {"w": jnp.ones(2)}, metadata)
    assert not (tmp_path / "p").exists() and list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(tmp_path):
    target = tmp_path / "p"
    save_params(target, {"w": jnp.ones(2)})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_params(target, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(load_params(target)[0]["w"], jnp.ones(2))
    save_params(target, {"w": jnp.zeros(3)}, {"v": 2}, overwrite=True)
    params, metadata = load_params(target)
    assert params["w"].shape == (3,) and metadata == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporaries left

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a params save"):
        save_params(other, {"w": jnp.ones(2)}, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["todo.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    save_params(empty, {"w": jnp.ones(2)})  # an empty directory is fine
    assert load_params(empty)[0]["w"].shape == (2,)


def test_flipped_bit_is_detected(tmp_path):
    w = jax.random.normal(jax.random.key(0), (64, 64))
    save_params(tmp_path / "p", {"w": w, "b": jnp.ones(64)})
    files = [f for f in (tmp_path / "p" / "arrays").rglob("*") if f.is_file()]
    biggest = max(files, key=lambda f: f.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0x04
    biggest.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load_params(tmp_path / "p")


def test_edited_metadata_is_detected(tmp_path):
    save_params(tmp_path / "p", {"w": jnp.ones(2)}, {"dim": 2})
    manifest = tmp_path / "p" / "params.json"
    manifest.write_text(manifest.read_text().replace('"dim": 2', '"dim": 3'))
    with pytest.raises(ValueError, match="checksum"):
        load_params(tmp_path / "p")


def test_load_errors_say_what_differs(tmp_path):
    save_params(tmp_path / "p", {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}})
    like = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(3, jnp.int32)}, "extra": jnp.ones(1)}
    with pytest.raises(ValueError) as info:
        load_params(tmp_path / "p", like=like)
    message = str(info.value)
    assert "dense/kernel: saved (2, 3) float32, `like` (3, 2) float32" in message
    assert "dense/bias: saved (3,) float32, `like` (3,) int32" in message
    assert "extra: in `like`" in message

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_params(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("")
    with pytest.raises(ValueError, match="not a params save"):
        load_params(tmp_path / "other")


def _trained_like_state(model, optimizer, step=3):
    state = fm.training.init_state(model, optimizer)
    return dataclasses.replace(
        state,
        params=jax.tree.map(lambda p: p + 1.0, state.params),
        ema=jax.tree.map(lambda p: p - 2.0, state.params),
        step=jnp.asarray(step, jnp.int32),
    )


def test_restore_params_and_ema_without_the_optimizer(tmp_path):
    model = _nnx_model()
    state = _trained_like_state(model, optax.adam(1e-3))
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(state)
    like = nnx.split(_nnx_model(seed=5), nnx.Param, ...)[1]
    _assert_trees_equal(ckpt.restore_params(like), state.params)
    _assert_trees_equal(ckpt.restore_params(like, step=3, ema=True), state.ema)
    _assert_trees_equal(ckpt.restore_params(_nnx_model(seed=5)), state.params)  # a model as like
    with pytest.raises(FileNotFoundError, match="step 7"):
        ckpt.restore_params(like, step=7)
    with pytest.raises(ValueError, match=r"layers/0/kernel/value: saved \(3, 8\) float32"):
        ckpt.restore_params(nnx.split(_nnx_model(hidden=(4,)), nnx.Param, ...)[1])
    ckpt.close()


def test_restore_params_of_an_equinox_model(tmp_path):
    model = eqx.nn.MLP(2, 2, 8, 1, key=jax.random.key(0))
    state = _trained_like_state(model, optax.sgd(0.1, momentum=0.9))
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(state)
    restored = ckpt.restore_params(eqx.nn.MLP(2, 2, 8, 1, key=jax.random.key(1)), ema=True)
    _assert_trees_equal(restored, state.ema)
    ckpt.close()


def test_restore_with_another_optimizer_is_one_short_error(tmp_path):
    model = _nnx_model()
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(_trained_like_state(model, optax.adam(1e-3)))
    with pytest.raises(ValueError) as info:
        ckpt.restore(fm.training.init_state(model, optax.sgd(0.1, momentum=0.9)))
    message = str(info.value)
    assert "opt_state/0/mu" in message and "does not match `like`" in message
    assert len(message.splitlines()) <= 7
    with pytest.raises(
        ValueError,
        match=r"params/out/kernel/value: saved \(8, 2\) float32, "
        r"`like` \(4, 2\) float32",
    ):
        ckpt.restore(fm.training.init_state(_nnx_model(hidden=(4,)), optax.adam(1e-3)))
    restored = ckpt.restore(fm.training.init_state(model, optax.adam(1e-3)))
    assert int(restored.step) == 3
    ckpt.close()


def test_checkpointer_directory_is_not_a_params_save(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(fm.training.init_state(_nnx_model(), optax.sgd(0.1)))
    with pytest.raises(ValueError, match="restore_params"):
        load_params(Path(tmp_path / "ckpt"))
    ckpt.close()


# --- checksummed Checkpointer steps ---------------------------------------------------------

# When one array cannot be read, orbax closes its event loop while tensorstore still completes
# the other reads; their callbacks then fail ("RuntimeError: Event loop is closed", printed as
# "Exception ignored in: None"). Harmless noise of orbax's, not ours: let it land in the test
# that caused it, and ignore it there.
unreadable_noise = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _settle():
    time.sleep(0.2)
    gc.collect()


@pytest.fixture(scope="module")
def state_300():
    """A TrainState of step 300 whose one array file holds ``params/w`` alone.

    OCDBT inlines values under 1 KiB in its b-tree: ``params/b``, the all-zero EMA (compressed)
    and the step live there, so damage to the data file is damage to ``params/w``.
    """
    params = {"w": jax.random.normal(jax.random.key(0), (64, 64)), "b": jnp.ones(64)}
    state = fm.training.TrainState(
        params=params,
        opt_state=optax.sgd(0.1).init(params),
        ema=jax.tree.map(jnp.zeros_like, params),
        step=jnp.asarray(300, jnp.int32),
    )
    return state, jax.tree.map(jnp.zeros_like, params)


def _saved(state_300, tmp_path, name="ckpt"):
    """A fresh save of ``state_300``: one per read of a damaged checkpoint, never a copy (within
    one process tensorstore served a read of a damaged copy of an OCDBT database, same uuid and
    file names, with the intact values of another copy read before)."""
    state, like = state_300
    directory = tmp_path / name
    ckpt = Checkpointer(directory)
    ckpt.save(state)
    ckpt.close()
    return directory, state, like


def _array_file(directory: Path, step: int = 300) -> Path:
    files = [f for f in (directory / str(step) / "default").rglob("*") if f.is_file() and "/d/" in str(f)]
    return max(files, key=lambda f: f.stat().st_size)  # the OCDBT data file holding params/w


def _one_line_damage(info, directory) -> str:
    message = str(info.value)
    assert message.startswith(f"checkpoint step 300 in {directory} is damaged: "), message
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


def _reads(state, like):
    return {
        "restore": lambda ckpt: ckpt.restore(state),
        "params": lambda ckpt: ckpt.restore_params(like),
        "verify": lambda ckpt: ckpt.verify(),
    }


def test_save_records_sha256_and_a_fresh_checkpointer_verifies(tmp_path):
    model = _nnx_model()
    state = _trained_like_state(model, optax.adam(1e-3), step=300)
    Checkpointer(tmp_path / "ckpt").save(state)
    sums = json.loads((tmp_path / "ckpt" / "300" / "sha256.json").read_text())
    paths = {"/".join(e["path"]) for e in sums["leaves"]}
    assert len(paths) == len(jax.tree.leaves(state)) and "params/layers/0/kernel/value" in paths
    assert sums["step"] == 300
    ckpt = Checkpointer(tmp_path / "ckpt")  # as in a new process: its manager never saved
    like = nnx.split(_nnx_model(seed=7), nnx.Param, ...)[1]
    _assert_trees_equal(ckpt.restore(state), state)
    _assert_trees_equal(ckpt.restore_params(like), state.params)
    _assert_trees_equal(ckpt.restore_params(model, ema=True), state.ema)
    ckpt.verify()
    assert "CheckpointDamagedError" in _checkpoint.__all__
    ckpt.close()


@unreadable_noise
@pytest.mark.parametrize("where", ["middle", "start"])
@pytest.mark.parametrize("read", ["restore", "params", "verify"])
def test_flipped_bit_in_an_array_file_is_damage(state_300, tmp_path, where, read):
    directory, state, like = _saved(state_300, tmp_path)
    target = _array_file(directory)
    data = bytearray(target.read_bytes())
    # the middle of the zstd-compressed chunk decodes to other values (caught by the sha256);
    # its start is the frame's magic number, so the chunk no longer decodes (unreadable)
    data[len(data) // 2 if where == "middle" else 0] ^= 0x10
    target.write_bytes(bytes(data))
    ckpt = Checkpointer(directory)
    with pytest.raises(CheckpointDamagedError) as info:
        _reads(state, like)[read](ckpt)
    message = _one_line_damage(info, directory)
    if where == "middle":
        assert message.endswith(": params/w does not match its recorded sha256"), message
    else:
        assert "its files cannot be read (ValueError: " in message and "params.w" in message, message
        assert info.value.__cause__ is not None  # orbax's error stays attached
    _assert_trees_equal(ckpt.restore_params(like, ema=True), state.ema)  # the EMA is intact
    ckpt.close()
    _settle()


@unreadable_noise
@pytest.mark.parametrize("read", ["restore", "params", "verify"])
def test_truncated_array_file_is_damage(state_300, tmp_path, read):
    directory, state, like = _saved(state_300, tmp_path)
    target = _array_file(directory)
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    ckpt = Checkpointer(directory)
    with pytest.raises(CheckpointDamagedError) as info:
        _reads(state, like)[read](ckpt)
    assert "its files cannot be read (ValueError: OUT_OF_RANGE: " in _one_line_damage(info, directory)
    assert info.value.__cause__ is not None
    ckpt.close()
    _settle()


def test_restore_params_verifies_against_the_recorded_sums(state_300, tmp_path):
    directory, state, like = _saved(state_300, tmp_path)
    path = directory / "300" / "sha256.json"
    sums = json.loads(path.read_text())
    for entry in sums["leaves"]:  # record another array, consistently re-signed
        if entry["path"] == ["params", "b"]:
            entry["sha256"] = _checkpoint._array_digest(np.zeros(entry["shape"], np.float32))
    body = {k: v for k, v in sums.items() if k != "sha256"}
    path.write_text(json.dumps({**body, "sha256": _checkpoint._digest(body)}))
    ckpt = Checkpointer(directory)
    with pytest.raises(CheckpointDamagedError, match="damaged: params/b does not match its recorded sha256"):
        ckpt.restore_params(like)
    _assert_trees_equal(ckpt.restore_params(like, ema=True), state.ema)  # the EMA is intact
    with pytest.raises(CheckpointDamagedError, match="params/b does not match"):
        ckpt.restore(state)
    ckpt.close()


def test_damaged_checksum_or_metadata_file_is_damage(state_300, tmp_path):
    directory, state, like = _saved(state_300, tmp_path)
    sums = directory / "300" / "sha256.json"
    sums.write_text(sums.read_text().replace('"step": 300', '"step": 301'))
    ckpt = Checkpointer(directory)
    with pytest.raises(CheckpointDamagedError, match="sha256.json does not match its own checksum"):
        ckpt.restore(state)
    sums.write_text(sums.read_text()[:100])
    with pytest.raises(CheckpointDamagedError, match=r"sha256.json cannot be read \(JSONDecodeError\)"):
        ckpt.restore_params(like)
    sums.unlink()
    (directory / "300" / "default" / "_METADATA").unlink()
    for read in (lambda: ckpt.restore(state), lambda: ckpt.restore_params(like), ckpt.verify):
        with pytest.raises(CheckpointDamagedError, match=r"orbax metadata \(default/_METADATA\) is missing"):
            read()
    ckpt.close()


@unreadable_noise
def test_checkpoint_without_checksums_restores_unverified(state_300, tmp_path):
    directory, state, like = _saved(state_300, tmp_path)
    (directory / "300" / "sha256.json").unlink()  # as saved before checksums were recorded
    ckpt = Checkpointer(directory)
    _assert_trees_equal(ckpt.restore(state), state)
    _assert_trees_equal(ckpt.restore_params(like, ema=True), state.ema)
    ckpt.verify()  # readable: nothing to compare against
    ckpt.close()
    directory = _saved(state_300, tmp_path, "second")[0]  # a fresh save to damage (see _saved)
    (directory / "300" / "sha256.json").unlink()
    target = _array_file(directory)
    target.write_bytes(target.read_bytes()[:10])
    with pytest.raises(CheckpointDamagedError, match="its files cannot be read"):
        Checkpointer(directory).restore(state)  # unreadable files are still damage
    _settle()


def test_max_to_keep_deletes_old_steps_with_their_checksums(tmp_path):
    model = _nnx_model()
    ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    for step in (100, 200, 300, 400):
        ckpt.save(_trained_like_state(model, optax.sgd(0.1), step=step))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["300", "400"]
    assert all((tmp_path / "ckpt" / s / "sha256.json").is_file() for s in ("300", "400"))
    ckpt.close()
    again = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    assert again.latest_step() == 400
    like = fm.training.init_state(model, optax.sgd(0.1))
    assert int(again.restore(like, step=300).step) == 300
    again.save(_trained_like_state(model, optax.sgd(0.1), step=500))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["400", "500"]
    again.verify(400)
    again.close()


# --- file modes -------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        save_params(tmp_path / "p", {"w": jnp.ones(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert (tmp_path / "p" / "params.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0o700
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
