"""Unit tests of the experiments' config (RunConfig, override, load_config, resolve), the
shipped configs/*.json, the run-directory guards and the data references. Nothing trains."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

import flowjax_fm as fm
from flowjax_fm.experiments import (
    TASK_DEFAULTS,
    EvalConfig,
    ModelConfig,
    RunConfig,
    _data,
    _rundir,
    load_config,
    override,
    resolve,
)

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.json"))


def _get(config, key):
    for part in key.split("."):
        config = getattr(config, part)
    return config


# -- RunConfig ---------------------------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip():
    c = RunConfig(
        target="scurve",
        steps=7,
        model=ModelConfig(hidden=(8, 4), options={"k": 1}),
        eval=EvalConfig(guidance_scales=(0.0, 3.0)),
    )
    d = c.to_dict()
    assert d["model"]["hidden"] == [8, 4] and d["eval"]["guidance_scales"] == [0.0, 3.0]
    json.dumps(d)  # JSON-able
    back = RunConfig.from_dict(d)
    assert back == c and back.model.hidden == (8, 4)
    assert RunConfig.from_dict({}) == RunConfig()  # a partial dict takes the defaults


@pytest.mark.parametrize(
    "d,message",
    [
        ({"nope": 1}, "unknown config key nope"),
        ({"nope": 1, "zap": 2}, "unknown config keys nope, zap"),
        ({"model": {"width": 3}}, "unknown config key model.width"),
        ({"eval": {"solvr": "euler"}}, "unknown config key eval.solvr"),
        ({"model": 3}, "model must be a JSON object"),
        ({"model": {"hidden": 64}}, "model.hidden must be a list"),
        ({"model": {"options": [1]}}, "model.options must be a JSON object"),
    ],
)
def test_from_dict_refuses_unknown_keys_and_bad_shapes(d, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        RunConfig.from_dict(d)


def test_from_dict_refuses_a_non_object():
    with pytest.raises(ValueError, match="JSON object"):
        RunConfig.from_dict([1, 2])


# -- override ----------------------------------------------------------------------------------


def test_override_sets_dotted_keys_and_leaves_the_original():
    c = RunConfig()
    d = override(c, {"steps": 5, "model.hidden": [16, 16], "eval.solver": "euler", "sigma": None})
    assert (d.steps, d.model.hidden, d.eval.solver) == (5, (16, 16), "euler")
    assert c == RunConfig()  # a copy: the config is frozen
    assert override(c, {"model.hidden": (3,)}).model.hidden == (3,)  # tuples as lists
    assert override(c, {}) == c


@pytest.mark.parametrize("key", ["nope", "model.nope", "eval.nope", "steps.x", "nope.x", "model"])
def test_override_refuses_unknown_keys(key):
    with pytest.raises(ValueError, match="unknown config key|must be a JSON object"):
        override(RunConfig(), {key: 1})


# -- resolve -----------------------------------------------------------------------------------


def test_task_defaults_name_fields_that_default_to_none():
    for kind, defaults in TASK_DEFAULTS.items():
        for key in defaults:
            assert _get(RunConfig(), key) is None, (kind, key)


@pytest.mark.parametrize("kind", ["points", "images"])
def test_resolve_fills_the_kind_defaults_and_is_idempotent(kind):
    c = resolve(RunConfig(), kind)
    for key, value in TASK_DEFAULTS[kind].items():
        assert _get(c, key) == value, key
    assert resolve(c, kind) == c
    # a value that is set is kept
    mine = resolve(RunConfig(steps=3, coupling="independent", eval=EvalConfig(solver="tsit5")), kind)
    assert (mine.steps, mine.coupling, mine.eval.solver) == (3, "independent", "tsit5")


def test_resolve_keeps_the_fields_that_have_no_kind_default():
    c = resolve(RunConfig(seed=4, ema_decay=0.5, clip=2.0), "points")
    assert (c.seed, c.ema_decay, c.clip, c.sigma, c.epsilon) == (4, 0.5, 2.0, None, None)


@pytest.mark.parametrize(
    "changes,kind,message",
    [
        ({"model.hidden": [8]}, "images", "model.hidden applies to model 'mlp' only"),
        ({"model.channels": 8}, "points", "model.channels applies to model 'unet' only"),
        ({"eval.samples": 10}, "images", "eval.samples applies to kind 'points' only"),
        ({"eval.guidance_scales": [1.0]}, "points", "eval.guidance_scales applies to kind 'images'"),
        ({"eval.per_class": 3}, "points", "eval.per_class applies to kind 'images'"),
        ({"eval.solver": "euler"}, "points", "takes a fixed number of steps"),
        ({"seed": 2**32}, "points", r"seed must be an int in \[0, 4294967295\]"),
        ({"seed": -1}, "points", "seed must be an int in"),
        ({"seed": 1.5}, "points", "seed must be an int in"),
        ({"steps": 0}, "points", "steps must be an int >= 1"),
        ({"steps": True}, "points", "steps must be an int >= 1"),
        ({"batch": 2.0}, "points", "batch must be an int >= 1"),
        ({"chunk": 0}, "points", "chunk must be an int >= 1"),
        ({"lr": 0.0}, "points", r"lr must be a finite number in \(0, inf\)"),
        ({"lr": float("nan")}, "points", "lr must be a finite number"),
        ({"weight_decay": -1.0}, "points", r"weight_decay must be a finite number in \[0, inf\)"),
        ({"cond_dropout": 1.5}, "images", r"cond_dropout must be a finite number in \[0, 1\]"),
        ({"ema_decay": 1.5}, "points", r"ema_decay must be a finite number in \[0, 1\]"),
        ({"clip": 0.0}, "points", r"clip must be a finite number in \(0, inf\)"),
        ({"warmup": -1}, "points", "warmup must be an int >= 0"),
        ({"coupling": "hungarian"}, "points", "unknown coupling 'hungarian'"),
        ({"path": "straight"}, "points", "unknown path 'straight'"),
        ({"eval.solver": "rk45"}, "points", "unknown eval.solver 'rk45'"),
        ({"model.name": "resnet"}, "points", "unknown model 'resnet'"),
        ({"schedule": "linear"}, "points", "unknown schedule 'linear'"),
        ({"coupling_scope": "local"}, "points", "unknown coupling scope"),
        ({"epsilon": 0.1}, "points", "epsilon is the Sinkhorn regularisation"),
        ({"path": "vp", "sigma": 0.1}, "points", "the vp path has no width"),
        ({"eval.rtol": 0.0}, "points", r"eval.rtol must be a finite number in \(0, inf\)"),
        ({"eval.num_steps": 0}, "points", "eval.num_steps must be an int >= 1"),
        ({"eval.test_fraction": 1.0}, "images", r"eval.test_fraction must be a finite number in \(0, 1\)"),
        ({"eval.classifier_steps": -1}, "images", "eval.classifier_steps must be an int >= 0"),
        ({"eval.guidance_scales": [float("inf")]}, "images", "eval.guidance_scales must be finite"),
        ({"eval.guidance_scales": []}, "images", "eval.guidance_scales must be finite"),
        ({"model.hidden": [8, 0]}, "points", "model.hidden must be positive integers"),
        ({"model.channel_mult": [1, 0]}, "images", "model.channel_mult must be positive integers"),
        ({"devices": 0}, "points", "devices must be an int >= 1"),
    ],
)
def test_resolve_refuses_bad_values(changes, kind, message):
    with pytest.raises(ValueError, match=message):
        resolve(override(RunConfig(), changes), kind)


def test_resolve_accepts_euler_with_a_number_of_steps():
    c = resolve(override(RunConfig(), {"eval.solver": "euler", "eval.num_steps": 4}), "points")
    assert (c.eval.solver, c.eval.num_steps) == ("euler", 4)


def test_resolve_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown run kind 'voxels'"):
        resolve(RunConfig(), "voxels")


# -- load_config and the shipped configs --------------------------------------------------------


def test_the_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"main_8gaussians_moons.json", "torchcfm_tutorial.json", "digits_guidance.json"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_resolves(path):
    raw = json.loads(path.read_text())
    c = load_config(path)
    kind = _data.task_kind(c.target)  # a .npz names images without being read
    r = resolve(c, kind)
    # the file's own values survive resolution (keys starting with "_" are comments)
    for key, value in raw.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                got = _get(r, f"{key}.{sub}")
                assert got == (tuple(v) if isinstance(v, list) else v), (key, sub)
        else:
            assert getattr(r, key) == value, key
    assert resolve(r, kind) == r
    # the resolved config goes through JSON and back unchanged
    assert RunConfig.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_the_main_job_config_is_the_defaults_of_a_point_run():
    main = resolve(load_config(CONFIGS[0].parent / "main_8gaussians_moons.json"), "points")
    assert main == resolve(RunConfig(sigma=0.1), "points")


def test_load_config_reads_a_run_json_and_refuses_bad_files(tmp_path):
    c = override(RunConfig(), {"steps": 9, "model.hidden": [5]})
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"format": "flowjax_fm.run", "version": 1, "config": c.to_dict()}))
    assert load_config(run_json) == c
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**c.to_dict(), "_about": "a comment"}))
    assert load_config(cfg) == c
    with pytest.raises(ValueError, match="cannot read it"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{steps: 3")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "unknown.json").write_text(json.dumps({"stpes": 3}))
    with pytest.raises(ValueError, match=r"unknown\.json: unknown config key stpes"):
        load_config(tmp_path / "unknown.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="a run config is a JSON object"):
        load_config(tmp_path / "list.json")


# -- the run directory --------------------------------------------------------------------------


def test_check_new_directory_accepts_absent_and_empty_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = _rundir.check_new_directory("a/b/c")
    assert got == tmp_path / "a" / "b" / "c" and got.is_absolute()
    assert not (tmp_path / "a").exists()
    (tmp_path / "empty").mkdir()
    assert _rundir.check_new_directory(tmp_path / "empty") == tmp_path / "empty"


def test_check_new_directory_refuses_non_empty_directories_and_files(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="already exists and is not empty.*--resume"):
        _rundir.check_new_directory(tmp_path / "full")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        _rundir.check_new_directory(tmp_path / "file")
    with pytest.raises(ValueError, match="is not a directory"):
        _rundir.check_new_directory(tmp_path / "file" / "below")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        _rundir.check_new_directory("/dev/null")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_new_directory_refuses_a_read_only_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            _rundir.check_new_directory(ro / "run")
    finally:
        ro.chmod(0o755)


def test_fresh_directory_numbers_the_outputs_of_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    first = _rundir.fresh_directory(run, None, "sample")
    assert first == run / "sample-001" and not first.exists()
    first.mkdir()
    assert _rundir.fresh_directory(run, None, "sample") == run / "sample-002"
    assert _rundir.fresh_directory(run, None, "loglik") == run / "loglik-001"
    assert _rundir.fresh_directory(run, tmp_path / "elsewhere", "sample") == tmp_path / "elsewhere"
    (first / "samples.npy").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        _rundir.fresh_directory(run, first, "sample")


def _record(**changes):
    record = {
        "format": "flowjax_fm.run",
        "version": 1,
        "kind": "points",
        "event_shape": [2],
        "conditions": None,
        "source": {"spec": "8gaussians"},
        "target": {"spec": "moons"},
        "config": resolve(RunConfig(), "points").to_dict(),
    }
    record.update(changes)
    return record


def test_read_record_accepts_a_run_json_and_names_what_is_wrong(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(_record()))
    assert _rundir.read_record(tmp_path)["kind"] == "points"
    broken = _record()
    del broken["event_shape"]
    (tmp_path / "run.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"damaged.*event_shape"):
        _rundir.read_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps(_record(format="something")))
    with pytest.raises(ValueError, match="damaged or not a flowjax_fm run"):
        _rundir.read_record(tmp_path)
    (tmp_path / "run.json").write_text('{"format": ')
    with pytest.raises(ValueError, match="damaged"):
        _rundir.read_record(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps(_record(version=99)))
    with pytest.raises(ValueError, match="format version 99"):
        _rundir.read_record(tmp_path)


def test_a_directory_without_run_json_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="is not a run directory: no run.json$"):
        fm.experiments.load_run(tmp_path)
    (tmp_path / "config.json").write_text("{}")  # what flowjax_fm wrote before run.json
    with pytest.raises(ValueError, match="retrain it"):
        fm.experiments.load_run(tmp_path)
    with pytest.raises(ValueError, match="not a run directory"):
        fm.experiments.load_run(tmp_path / "nowhere")


def test_a_run_json_with_a_bad_config_is_named(tmp_path):
    record = _record()
    record["config"]["steps"] = 0
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"run\.json.*steps must be an int >= 1"):
        fm.experiments.load_run(tmp_path)


def test_a_run_without_a_checkpoint_is_file_not_found(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(_record()))
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        fm.experiments.load_run(tmp_path)


# -- data names and files -----------------------------------------------------------------------


def test_file_names_are_made_absolute_and_recorded_by_sha256(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("pts.npy", np.zeros((4, 2), np.float32))
    assert _data.absolute_spec("pts.npy") == str(tmp_path / "pts.npy")
    assert _data.absolute_spec("moons") == "moons"
    ref = _data.file_ref(str(tmp_path / "pts.npy"))
    assert len(ref["sha256"]) == 64
    assert _data.file_ref("moons") == {"spec": "moons"}
    _data.check_ref(ref, "source")  # unchanged: no error
    np.save("pts.npy", np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="changed since training"):
        _data.check_ref(ref, "source")
    os.unlink("pts.npy")
    with pytest.raises(ValueError, match="is gone"):
        _data.check_ref(ref, "source")
    with pytest.raises(ValueError, match="cannot read it"):
        _data.file_ref(str(tmp_path / "pts.npy"))


def test_task_kind_follows_the_target(tmp_path):
    assert _data.task_kind("moons") == "points"
    assert _data.task_kind("digits") == "images"
    np.save(tmp_path / "img.npy", np.zeros((3, 4, 4, 1), np.float32))
    np.save(tmp_path / "pts.npy", np.zeros((3, 5), np.float32))
    assert _data.task_kind(str(tmp_path / "img.npy")) == "images"
    assert _data.task_kind(str(tmp_path / "pts.npy")) == "points"
    with pytest.raises(ValueError, match="unknown target 'spirals'"):
        _data.task_kind("spirals")


def test_source_density_exists_only_in_closed_form():
    assert _data.source_log_prob("normal", (2,)) is fm.likelihood.standard_normal_log_prob
    with pytest.raises(ValueError, match="no density"):
        _data.source_log_prob("/data/x.npy", (2,))
    if not hasattr(fm.data, "toy_log_prob"):
        pytest.skip("fm.data.toy_log_prob is not in yet")
    assert callable(_data.source_log_prob("8gaussians", (2,)))
    with pytest.raises(ValueError, match="loglik needs the source density"):
        _data.source_log_prob("moons", (2,))


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().steps = 3


def test_a_recorded_none_is_not_filled_with_todays_defaults():
    # run.json holds the config resolved at training time; a MeanFlow run trained before the
    # few-step EMA default (0.999) recorded ema_decay None and must load without an EMA
    saved = resolve(RunConfig(objective="meanflow"), "points").to_dict()
    assert saved["ema_decay"] == 0.999
    saved["ema_decay"] = None
    config = _rundir._as_recorded(resolve(RunConfig.from_dict(saved), "points"), saved)
    assert config.ema_decay is None
    assert config.to_dict() == saved
    unchanged = resolve(RunConfig(), "points")
    assert _rundir._as_recorded(unchanged, unchanged.to_dict()) == unchanged
