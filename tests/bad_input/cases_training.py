"""Bad-input cases for ``fm.training`` and ``fm.data``.

Shared objects (a tiny MLP, its step and state) are built once, lazily, on first use; no
case trains: every refusal happens before the first compiled chunk.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import shutil
import tempfile

import numpy as np

from bad_input import Case

# -- shared objects, built lazily ------------------------------------------------------------


@functools.cache
def _fm():
    import flowjax_fm as fm

    return fm


@functools.cache
def _tmp() -> str:
    path = tempfile.mkdtemp(prefix="fm_bad_input_training_")
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def _model(num_classes=None):
    from flax import nnx

    return _fm().models.MLP(2, (8,), num_classes=num_classes, rngs=nnx.Rngs(0))


@functools.cache
def _opt():
    import optax

    return optax.sgd(1e-2)


def _path():
    return _fm().paths.CondOTPath()


@functools.cache
def _step(num_classes=None):
    return _fm().training.make_train_step(_model(num_classes), optimizer=_opt(), path=_path())


@functools.cache
def _state(num_classes=None):
    return _fm().training.init_state(_model(num_classes), _opt())


def _key():
    import jax

    return jax.random.key(0)


def _x(n=6):
    import jax.numpy as jnp

    return jnp.ones((n, 2))


def _fit(target=None, *, num_classes=None, **kw):
    kw = {"num_steps": 2, "batch_size": 4, "progress": False, **kw}
    target = _x() if target is None else target
    return _fm().training.fit(_step(num_classes), _state(num_classes), _key(), None, target, **kw)


def _fit_labelled(y, **kw):
    kw = {"num_steps": 2, "batch_size": 4, "progress": False, **kw}
    x = np.ones((6, 2, 2, 1), np.float32)
    model = _model(3)
    step = _fm().training.make_train_step(model, optimizer=_opt(), path=_path())
    return _fm().training.fit_labelled(step, _state(3), _key(), x.reshape(6, -1), y, **kw)


def _train_step(**kw):
    return _fm().training.make_train_step(_model(), optimizer=_opt(), path=_path(), **kw)


def _replace_step(**kw):
    return dataclasses.replace(_step(), **kw)


def _npy(name, array) -> str:
    path = os.path.join(_tmp(), name)
    np.save(path, array)
    return path


def _ckpt(**kw):
    return _fm().training.Checkpointer(os.path.join(_tmp(), "ckpt"), **kw)


def _mesh():
    return _fm().training.data_mesh(1)


def _batch_plan(*args):
    return _fm().training.BatchPlan(*args)


def _train_state(step):
    return _fm().training.TrainState(params=None, opt_state=None, ema=None, step=step)


def _model_apply(**kw):
    kw = {"rest": None, "kind": "apply", "static": lambda p, x, t: x, **kw}
    return _fm().training.ModelApply(**kw)


T = "training."
D = "data."
INT1 = r"must be an int >= 1, got "

CASES = [
    # -- make_optimizer ------------------------------------------------------------------------
    Case(T + "make_optimizer", "lr=0", lambda: _fm().training.make_optimizer(0.0),
         match=r"lr must be a finite number in \(0, inf\), got 0.0"),
    Case(T + "make_optimizer", "lr=nan", lambda: _fm().training.make_optimizer(float("nan")),
         match=r"lr must be a finite number in \(0, inf\), got nan"),
    Case(T + "make_optimizer", "lr=str", lambda: _fm().training.make_optimizer("1e-3"),
         match="lr must be a real number"),
    Case(T + "make_optimizer", "clip_norm=nan",
         lambda: _fm().training.make_optimizer(clip_norm=float("nan")),
         match=r"clip_norm must be a finite number in \(0, inf\), got nan"),
    Case(T + "make_optimizer", "clip_norm=-1",
         lambda: _fm().training.make_optimizer(clip_norm=-1.0), match=r"clip_norm .*\(0, inf\)"),
    Case(T + "make_optimizer", "schedule=linear",
         lambda: _fm().training.make_optimizer(schedule="linear"),
         match="unknown schedule 'linear'; choose one of 'constant', 'cosine'"),
    Case(T + "make_optimizer", "warmup_steps=-1",
         lambda: _fm().training.make_optimizer(warmup_steps=-1),
         match="warmup_steps must be an int >= 0, got -1"),
    Case(T + "make_optimizer", "warmup_steps=2.5",
         lambda: _fm().training.make_optimizer(warmup_steps=2.5),
         match="warmup_steps must be an int >= 0, got 2.5"),
    Case(T + "make_optimizer", "total_steps=True",
         lambda: _fm().training.make_optimizer(schedule="cosine", total_steps=True),
         match="total_steps must be an int >= 0, got True"),
    Case(T + "make_optimizer", "cosine-without-total",
         lambda: _fm().training.make_optimizer(schedule="cosine", warmup_steps=5),
         match="cosine schedule needs total_steps > warmup_steps"),
    Case(T + "make_optimizer", "weight_decay=-1",
         lambda: _fm().training.make_optimizer(weight_decay=-1.0),
         match=r"weight_decay must be a finite number in \[0, inf\)"),
    Case(T + "make_optimizer", "b1=1", lambda: _fm().training.make_optimizer(b1=1.0),
         match=r"b1 must be a finite number in \[0, 1\), got 1.0"),
    Case(T + "make_optimizer", "b2=-0.1", lambda: _fm().training.make_optimizer(b2=-0.1),
         match=r"b2 must be a finite number in \[0, 1\)"),
    Case(T + "make_optimizer", "end_lr_factor=2",
         lambda: _fm().training.make_optimizer(end_lr_factor=2.0),
         match=r"end_lr_factor must be a finite number in \[0, 1\]"),
    # -- make_train_step / TrainStep -----------------------------------------------------------
    Case(T + "make_train_step", "ema_decay=2", lambda: _train_step(ema_decay=2.0),
         match=r"ema_decay must be a finite number in \[0, 1\], got 2.0"),
    Case(T + "make_train_step", "ema_decay=-0.5", lambda: _train_step(ema_decay=-0.5),
         match=r"ema_decay must be a finite number in \[0, 1\], got -0.5"),
    Case(T + "make_train_step", "ema_decay=nan", lambda: _train_step(ema_decay=float("nan")),
         match=r"ema_decay .*\[0, 1\], got nan"),
    Case(T + "make_train_step", "cond_dropout=1.5",
         lambda: _train_step(cond_dropout=1.5, null_cond=0),
         match=r"cond_dropout must be a finite number in \[0, 1\], got 1.5"),
    Case(T + "make_train_step", "cond_dropout-without-null", lambda: _train_step(cond_dropout=0.1),
         match="condition dropout needs a null condition"),
    Case(T + "make_train_step", "accumulate=0", lambda: _train_step(accumulate=0),
         match="accumulate " + INT1 + "0"),
    Case(T + "make_train_step", "accumulate=True", lambda: _train_step(accumulate=True),
         match="accumulate " + INT1 + "True"),
    Case(T + "make_train_step", "coupling_scope=local", lambda: _train_step(coupling_scope="local"),
         match="unknown coupling_scope 'local'; choose one of 'global', 'per_shard'"),
    Case(T + "make_train_step", "path=None",
         lambda: _fm().training.make_train_step(_model(), optimizer=_opt(), path=None),
         error=TypeError, match=r"path must be an instance of fm\.paths\.AbstractPath"),
    Case(T + "make_train_step", "coupling=function", lambda: _train_step(coupling=lambda k, a, b: None),
         error=TypeError, match=r"coupling must be an instance of fm\.couplings\.AbstractCoupling"),
    Case(T + "make_train_step", "time_sampler=str", lambda: _train_step(time_sampler="uniform"),
         error=TypeError, match=r"time_sampler must be an instance of fm\.time_sampling\.AbstractTime"),
    Case(T + "make_train_step", "optimizer=float",
         lambda: _fm().training.make_train_step(_model(), optimizer=1e-3, path=_path()),
         error=TypeError, match="optimizer must be an optax GradientTransformation"),
    Case(T + "make_train_step", "weight=3", lambda: _train_step(weight=3.0),
         error=TypeError, match="weight must be None or a function"),
    Case(T + "make_train_step", "model=array", lambda: _fm().training.make_train_step(
        np.zeros(3), optimizer=_opt(), path=_path()), error=TypeError, match="cannot use ndarray as a model"),
    Case(T + "make_conditional_train_step", "dropout=1.5",
         lambda: _fm().training.make_conditional_train_step(
             _model(3), optimizer=_opt(), path=_path(), dropout=1.5),
         match=r"cond_dropout must be a finite number in \[0, 1\], got 1.5"),
    Case(T + "make_conditional_train_step", "no-null-class",
         lambda: _fm().training.make_conditional_train_step(_model(), optimizer=_opt(), path=_path()),
         match="the model has no null condition"),
    Case(T + "make_conditional_train_step", "ema_decay=2",
         lambda: _fm().training.make_conditional_train_step(
             _model(3), optimizer=_opt(), path=_path(), ema_decay=2.0),
         match=r"ema_decay must be a finite number in \[0, 1\]"),
    Case(T + "TrainStep", "ema_decay=2", lambda: _replace_step(ema_decay=2.0),
         match=r"ema_decay must be a finite number in \[0, 1\]"),
    Case(T + "TrainStep", "mode=vmap", lambda: _replace_step(mode="vmap"),
         match="unknown mode 'vmap'"),
    Case(T + "TrainStep", "model=function", lambda: _replace_step(model=lambda p, x, t: x),
         error=TypeError, match="TrainStep.model must be a ModelApply"),
    Case(T + "TrainStep", "labels(B,1)-at-call", lambda: _step(3)(
        _state(3), _key(), _x(4), _x(4), np.zeros((4, 1), np.int32)),
         match=r"labels must have shape \(4,\), got \(4, 1\)"),
    Case(T + "TrainStep", "float-labels-at-call", lambda: _step(3)(
        _state(3), _key(), _x(4), _x(4), np.zeros(4, np.float32)),
         match="labels must be integer class labels, got dtype float32"),
    Case(T + "TrainState", "step=0.5", lambda: _train_state(0.5),
         match="TrainState.step must be an integer scalar"),
    Case(T + "TrainState", "step=-1", lambda: _train_state(-1),
         match="TrainState.step must be an int >= 0, got -1"),
    Case(T + "TrainState", "step=vector", lambda: _train_state(np.zeros(3, np.int32)),
         match=r"integer scalar .*shape \(3,\)"),
    Case(T + "ModelApply", "kind=linen", lambda: _model_apply(kind="linen"),
         match="unknown kind 'linen'; choose one of 'nnx', 'equinox', 'apply'"),
    Case(T + "ModelApply", "num_classes=0", lambda: _model_apply(num_classes=0),
         match="num_classes must be None or an int >= 1, got 0"),
    Case(T + "BatchPlan", "batch_size=0", lambda: _batch_plan(0, "normal", "array"),
         match="batch_size " + INT1 + "0"),
    Case(T + "BatchPlan", "source=noise", lambda: _batch_plan(4, "noise", "array"),
         match="unknown source 'noise'"),
    Case(T + "BatchPlan", "sampler-without-fn", lambda: _batch_plan(4, "normal", "sampler"),
         error=TypeError, match="a target sampler needs target_fn"),
    # -- fit / fit_labelled ----------------------------------------------------------------------
    Case(T + "fit", "batch_size=True", lambda: _fit(batch_size=True),
         match="batch_size " + INT1 + "True"),
    Case(T + "fit", "batch_size=0", lambda: _fit(batch_size=0), match="batch_size " + INT1 + "0"),
    Case(T + "fit", "batch_size=4.0", lambda: _fit(batch_size=4.0), match="batch_size " + INT1 + "4.0"),
    Case(T + "fit", "num_steps=-1", lambda: _fit(num_steps=-1),
         match="num_steps must be an int >= 0, got -1"),
    Case(T + "fit", "chunk_size=0", lambda: _fit(chunk_size=0), match="chunk_size " + INT1 + "0"),
    Case(T + "fit", "unroll=-1", lambda: _fit(unroll=-1), match="unroll must be an int >= 0, got -1"),
    Case(T + "fit", "progress=str", lambda: _fit(progress="no"),
         match="progress must be True or False, got 'no'"),
    Case(T + "fit", "paired=1", lambda: _fit(paired=1), match="paired must be True or False, got 1"),
    Case(T + "fit", "key=int", lambda: _fm().training.fit(
        _step(), _state(), 0, None, _x(), num_steps=1, batch_size=2, progress=False),
         error=TypeError, match=r"key must be one jax\.random\.key"),
    Case(T + "fit", "state=None", lambda: _fm().training.fit(
        _step(), None, _key(), None, _x(), num_steps=1, batch_size=2, progress=False),
         error=TypeError, match="state must be a TrainState"),
    Case(T + "fit", "on_chunk=3", lambda: _fit(on_chunk=3), error=TypeError,
         match="on_chunk must be None or a function"),
    Case(T + "fit", "transform=3", lambda: _fit(transform=3), match="transform must be a function"),
    Case(T + "fit", "pairing=bogus", lambda: _fit(pairing="ahead"),
         match=r"unknown pairing 'ahead'; choose one of 'auto', 'in_step', 'prefetch'"),
    Case(T + "fit", "prefetch=0", lambda: _fit(pairing="prefetch", prefetch=0),
         match="prefetch " + INT1 + "0"),
    Case(T + "fit", "workers=0", lambda: _fit(pairing="prefetch", workers=0),
         match="workers " + INT1 + "0"),
    Case(T + "fit", "prefetch-own-step", lambda: _fm().training.fit(
        lambda s, k, a, b: _step()(s, k, a, b), _state(), _key(), None, _x(), num_steps=2,
        batch_size=4, progress=False, pairing="prefetch"),
        match="pairing='prefetch' cannot pair ahead for this step: the step is neither"),
    Case(T + "fit", "integer-data", lambda: _fit(np.ones((6, 2), np.int32)),
         match="target must be floating point"),
    Case(T + "fit", "labels-out-of-range", lambda: _fit((_x(), np.array([0, 1, 2, 9, 0, 1])), num_classes=3),
         match=r"labels must lie in \[0, 4\).*row 3 has label 9"),
    Case(T + "fit", "labels-negative", lambda: _fit((_x(), np.array([0, -1, 2, 1, 0, 1])), num_classes=3),
         match=r"row 1 has label -1"),
    Case(T + "fit", "labels-float", lambda: _fit((_x(), np.zeros(6, np.float32)), num_classes=3),
         match="labels must be integer class labels, got dtype float32"),
    Case(T + "fit", "labels(N,1)", lambda: _fit((_x(), np.zeros((6, 1), np.int32)), num_classes=3),
         match=r"labels must have shape \(6,\), got \(6, 1\)"),
    Case(T + "fit", "labels-wrong-length", lambda: _fit((_x(), np.zeros(5, np.int32)), num_classes=3),
         match="leading size 6"),
    Case(T + "fit_labelled", "labels-out-of-range", lambda: _fit_labelled(np.arange(6)),
         match=r"labels must lie in \[0, 4\).*row 4 has label 4"),
    Case(T + "fit_labelled", "labels-float", lambda: _fit_labelled(np.zeros(6, np.float32)),
         match="labels must be integer class labels"),
    Case(T + "fit_labelled", "batch_size=True", lambda: _fit_labelled(np.zeros(6, np.int32), batch_size=True),
         match="batch_size " + INT1 + "True"),
    # -- condition dropout -------------------------------------------------------------------------
    Case(T + "label_dropout", "p=1.5", lambda: _fm().training.label_dropout(_key(), np.arange(4), 1.5, 4),
         match=r"p must be a finite number in \[0, 1\], got 1.5"),
    Case(T + "label_dropout", "p=nan",
         lambda: _fm().training.label_dropout(_key(), np.arange(4), float("nan"), 4),
         match=r"p must be a finite number in \[0, 1\], got nan"),
    Case(T + "label_dropout", "float-labels",
         lambda: _fm().training.label_dropout(_key(), np.zeros(4, np.float32), 0.1, 4),
         match="labels must be integer class labels"),
    Case(T + "label_dropout", "labels(B,1)",
         lambda: _fm().training.label_dropout(_key(), np.zeros((4, 1), np.int32), 0.1, 4),
         match=r"labels must have shape \(B,\), got \(4, 1\)"),
    Case(T + "label_dropout", "null_label=-1",
         lambda: _fm().training.label_dropout(_key(), np.arange(4), 0.1, -1),
         match="null_label must be an int >= 0"),
    Case(T + "label_dropout", "null_label=1.5",
         lambda: _fm().training.label_dropout(_key(), np.arange(4), 0.1, 1.5),
         match="null_label must be an int >= 0"),
    Case(T + "drop_condition", "p=2", lambda: _fm().training.drop_condition(_key(), np.arange(4), 2.0, 4),
         match=r"p must be a finite number in \[0, 1\], got 2.0"),
    Case(T + "drop_condition", "index-shape",
         lambda: _fm().training.drop_condition(_key(), np.arange(4), 0.5, 4, index=np.arange(3)),
         match=r"index must be integer example indices of shape \(4,\)"),
    Case(T + "drop_condition", "no-arrays", lambda: _fm().training.drop_condition(_key(), {}, 0.5, {}),
         match="cond has no arrays"),
    # -- models and state -------------------------------------------------------------------------
    Case(T + "as_model", "class", lambda: _fm().training.as_model(dict), error=TypeError,
         match="cannot use the class dict as a model; accepted"),
    Case(T + "as_model", "array", lambda: _fm().training.as_model(np.zeros(2)), error=TypeError,
         match="cannot use ndarray as a model"),
    Case(T + "as_model", "two-argument-field", lambda: _fm().training.as_model(lambda x, t: x),
         error=TypeError, match=r"must be apply\(params, x, t, cond=None\)"),
    Case(T + "make_vector_field", "apply-without-params",
         lambda: _fm().training.make_vector_field(lambda p, x, t: x), error=TypeError,
         match="a plain-function model needs its params"),
    Case(T + "make_vector_field", "int", lambda: _fm().training.make_vector_field(3), error=TypeError,
         match="cannot use int as a model"),
    Case(T + "split_model", "array", lambda: _fm().training.split_model(np.zeros(2)), error=TypeError,
         match=r"split_model takes a Flax NNX module \(nnx.Module\), got ndarray"),
    Case(T + "init_state", "optimizer=float", lambda: _fm().training.init_state(_model(), 1e-3),
         error=TypeError, match="optimizer must be an optax GradientTransformation"),
    Case(T + "init_state", "function", lambda: _fm().training.init_state(lambda p, x, t: x, _opt()),
         error=TypeError, match="init_state takes a model that holds its parameters"),
    Case(T + "init_state", "empty-params", lambda: _fm().training.init_state({}, _opt()),
         error=TypeError, match="the params pytree has no leaves"),
    # -- devices ---------------------------------------------------------------------------------
    Case(T + "data_mesh", "num_devices=0", lambda: _fm().training.data_mesh(0),
         match=r"num_devices must be an int in \[1, \d+\], got 0"),
    Case(T + "data_mesh", "num_devices=True", lambda: _fm().training.data_mesh(True),
         match=r"num_devices must be an int in \[1, \d+\], got True"),
    Case(T + "data_mesh", "num_devices=10**6", lambda: _fm().training.data_mesh(10**6),
         match=r"num_devices must be an int in \[1, \d+\], got 1000000 \(\d+ device\(s\) available\)"),
    Case(T + "data_mesh", "axis_name=3", lambda: _fm().training.data_mesh(1, axis_name=3),
         error=TypeError, match="axis_name must be a str, got int"),
    Case(T + "replicate", "mesh=str", lambda: _fm().training.replicate({"w": np.ones(2)}, "data"),
         error=TypeError, match=r"mesh must be a jax\.sharding\.Mesh"),
    Case(T + "shard_step", "step=function", lambda: _fm().training.shard_step(lambda *a: a, _mesh()),
         error=TypeError, match="the data-parallel drivers wrap a step from make_train_step"),
    Case(T + "shard_step", "mesh=None", lambda: _fm().training.shard_step(_step(), None),
         error=TypeError, match=r"mesh must be a jax\.sharding\.Mesh"),
    Case(T + "pmap_step", "step=function", lambda: _fm().training.pmap_step(lambda *a: a),
         error=TypeError, match="the data-parallel drivers wrap a step from make_train_step"),
    Case(T + "pmap_step", "axis_name=1", lambda: _fm().training.pmap_step(_step(), axis_name=1),
         error=TypeError, match="axis_name must be a str"),
    Case(T + "pmap_step", "devices=[]", lambda: _fm().training.pmap_step(_step(), devices=[]),
         match="devices must be a non-empty list of jax devices"),
    Case(T + "initialize_distributed", "coordinator-without-port",
         lambda: _fm().training.initialize_distributed("localhost", 2, 0),
         match="the coordinator must be host:port"),
    Case(T + "initialize_distributed", "process_id=5",
         lambda: _fm().training.initialize_distributed("127.0.0.1:1234", 2, 5),
         match=r"process id 5 is outside \[0, 2\)"),
    Case(T + "initialize_distributed", "num_processes=0",
         lambda: _fm().training.initialize_distributed("127.0.0.1:1234", 0, 0),
         match="num_processes must be an int >= 1, got 0"),
    Case(T + "initialize_distributed", "timeout=-1",
         lambda: _fm().training.initialize_distributed("127.0.0.1:1234", 2, 0, timeout=-1.0),
         match=r"timeout must be a finite number in \(0, inf\), got -1.0"),
    Case(T + "initialize_distributed", "coordinator=int",
         lambda: _fm().training.initialize_distributed(1234, 2, 0),
         match="the coordinator must be a str host:port"),
    # -- files -------------------------------------------------------------------------------------
    Case(T + "Checkpointer", "max_to_keep=0", lambda: _ckpt(max_to_keep=0),
         match="max_to_keep " + INT1 + "0"),
    Case(T + "Checkpointer", "max_to_keep=True", lambda: _ckpt(max_to_keep=True),
         match="max_to_keep " + INT1 + "True"),
    Case(T + "Checkpointer", "directory=None", lambda: _fm().training.Checkpointer(None),
         error=TypeError, match="directory must be a non-empty str or os.PathLike"),
    Case(T + "Checkpointer", "restore(step=-1)", lambda: _ckpt().restore(_state(), step=-1),
         match="step must be an int >= 0, got -1"),
    Case(T + "Checkpointer", "save(force=1)", lambda: _ckpt().save(_state(), force=1),
         match="force must be True or False, got 1"),
    Case(T + "save_params", "directory=None", lambda: _fm().training.save_params(None, {"w": np.ones(2)}),
         error=TypeError, match="directory must be a non-empty str or os.PathLike"),
    Case(T + "save_params", "overwrite=str",
         lambda: _fm().training.save_params(os.path.join(_tmp(), "p"), {"w": np.ones(2)}, overwrite="yes"),
         match="overwrite must be True or False, got 'yes'"),
    Case(T + "save_params", "metadata=nan",
         lambda: _fm().training.save_params(
             os.path.join(_tmp(), "p"), {"w": np.ones(2)}, {"a": float("nan")}),
         match="JSON has no NaN or infinity"),
    Case(T + "save_params", "no-leaves", lambda: _fm().training.save_params(os.path.join(_tmp(), "p"), {}),
         match="params has no array leaves"),
    Case(T + "load_params", "directory=3", lambda: _fm().training.load_params(3), error=TypeError,
         match="directory must be a non-empty str or os.PathLike"),
    Case(T + "load_params", "missing", lambda: _fm().training.load_params(os.path.join(_tmp(), "none")),
         error=FileNotFoundError, match="no params save at .*does not exist"),
    Case(T + "write_json_atomic", "path=None", lambda: _fm().training.write_json_atomic(None, {}),
         error=TypeError, match="path must be a non-empty str or os.PathLike"),
    Case(T + "write_json_atomic", "object",
         lambda: _fm().training.write_json_atomic(os.path.join(_tmp(), "a.json"), {"a": object()}),
         error=TypeError, match="a.json: obj is not JSON-serialisable"),
    # -- data ----------------------------------------------------------------------------------------
    Case(D + "sample_toy", "name=ring", lambda: _fm().data.sample_toy("ring", _key(), 4),
         match="unknown toy data set 'ring'; valid names: gaussian, 8gaussians"),
    Case(D + "sample_toy", "name=None", lambda: _fm().data.sample_toy(None, _key(), 4),
         match="unknown toy data set None"),
    Case(D + "sample_toy", "n=0", lambda: _fm().data.sample_toy("moons", _key(), 0),
         match=r"n must be an int >= 1 \(a static sample size\), got 0"),
    Case(D + "sample_toy", "n=True", lambda: _fm().data.sample_toy("moons", _key(), True),
         match=r"n must be an int >= 1 .*got True"),
    Case(D + "sample_toy", "n=2.5", lambda: _fm().data.sample_toy("moons", _key(), 2.5),
         match=r"n must be an int >= 1 .*got 2.5"),
    Case(D + "make_sampler", "name=ring", lambda: _fm().data.make_sampler("ring"),
         match="unknown toy data set 'ring'"),
    Case(D + "make_sampler", "n=-1", lambda: _fm().data.make_sampler("moons")(_key(), -1),
         match=r"n must be an int >= 1"),
    Case(D + "toy_log_prob", "no-closed-form", lambda: _fm().data.toy_log_prob("moons"),
         match="toy data set 'moons' has no closed-form density"),
    Case(D + "toy_log_prob", "name=ring", lambda: _fm().data.toy_log_prob("ring"),
         match="unknown toy data set 'ring'"),
    Case(D + "toy_log_prob", "x-shape", lambda: _fm().data.toy_log_prob("gaussian")(np.zeros(5)),
         match=r"takes points of shape \(B, 2\), got shape \(5,\)"),
    Case(D + "load_points", "path=None", lambda: _fm().data.load_points(None), error=TypeError,
         match="path must be a non-empty str or os.PathLike"),
    Case(D + "load_points", "missing", lambda: _fm().data.load_points(os.path.join(_tmp(), "none.npy")),
         match="cannot read a .npy array"),
    Case(D + "load_points", "integers", lambda: _fm().data.load_points(_npy("ints.npy", np.arange(3))),
         match="points must be floating point, got dtype int64"),
    Case(D + "load_points", "nan", lambda: _fm().data.load_points(_npy("nan.npy", np.full((2, 2), np.nan))),
         match="4 non-finite values"),
    Case(D + "load_array_dataset", "divisor=0",
         lambda: _fm().data.load_array_dataset(_npy("img.npy", np.zeros((2, 4, 4, 1))), divisor=0),
         match="divisor " + INT1 + "0"),
    Case(D + "load_array_dataset", "num_classes=True",
         lambda: _fm().data.load_array_dataset(_npy("img.npy", np.zeros((2, 4, 4, 1))), num_classes=True),
         match="num_classes " + INT1 + "True"),
    Case(D + "load_array_dataset", "path=None", lambda: _fm().data.load_array_dataset(None),
         error=TypeError, match="path must be a non-empty str or os.PathLike"),
    Case(D + "load_array_dataset", "channels-first",
         lambda: _fm().data.load_array_dataset(_npy("cf.npy", np.zeros((2, 1, 8, 8)))),
         match="looks channels-first"),
]

EXEMPT = {
    T + "Batch": "a NamedTuple of arrays that fit builds and transform hooks return; no hyperparameters",
    T + "CheckpointDamagedError": "an exception class raised by the library",
    T + "NonFiniteLossError": "an exception class raised by fit",
    T + "RuntimeCheckError": "an exception class raised by fit",
    D + "TOY_NAMES": "a constant tuple of names",
    D + "load_digits": "takes no arguments",
}
