"""The [SF]2M bridge and leave-one-out trajectory benchmark suites (``benchmarks.bench_bridges``,
``benchmarks.bench_trajectory``).

The default run checks the tables on made-up rows (no training): every cell of ours against
torchcfm is reported, a lost cell is marked, and a table shows only the rows of the chosen
``--init`` (rows without the field count as ``native``); and it checks that ``--init same``
copies torchcfm's initial MLP into ours exactly. The slow tier runs each suite's ``--quick`` mode
in its own process, as a user would (about 30 s each on one core), with its output in a
temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from benchmarks import _harness as h
from benchmarks import bench_bridges as bb
from benchmarks import bench_trajectory as bt

ROOT = Path(__file__).resolve().parents[1]


def _ctx(suite, **args):
    return h.Context(suite, Namespace(quick=False, **args), Path("."))


def _bridge_row(lib, sampler, seed, w2, per_1k_s=0.01):
    return {"suite": "bridges", "task": "8gaussians->moons", "coupling": "exact", "seed": seed,
            "library": lib, "sampler": sampler, "w2": w2, "nfe": 100, "per_1k_s": per_1k_s,
            "sample_compile_s": None, "train_s": 10.0, "steps_per_s": 300.0, "final_loss": 5.0}


def test_bridges_tables_report_every_cell_and_mark_losses():
    rows = [_bridge_row("flowjax_fm", s, seed, 0.30 + 0.01 * seed) for s in bb.OURS for seed in (0, 1)]
    rows += [_bridge_row("torchcfm", "SDE EM 100", seed, 0.35, per_1k_s=0.02) for seed in (0, 1)]
    rows += [_bridge_row("torchcfm", "ODE v dopri5", seed, 0.20) for seed in (0, 1)]  # ours loses here
    ctx = _ctx(bb.SUITE)
    table = bb.table_rows(ctx, rows)
    assert [(t["library"], t["sampler"]) for t in table] == (
        [("flowjax_fm", s) for s in bb.OURS] + [("torchcfm", "SDE EM 100"), ("torchcfm", "ODE v dopri5")])
    cells = [[cell(t) for _, cell in bb.COLUMNS] for t in table]
    assert cells[0][5] == "0.305 +- 0.007" and cells[0][7] == "10.0"  # W2 mean +- sd; ms / 1k
    md = bb.extra_md(ctx, rows)
    lines = {line.split(" | ")[2]: line for line in md.splitlines() if line.startswith("| 8gaussians")}
    assert "| yes | 2/2 | 2.0x |" in lines["SDE EM 100 vs SDE EM 100"]
    assert "| **no** | 0/2 |" in lines["ODE v dopri5 vs ODE v dopri5"]
    assert "SDE EM 100 vs SDE SRK dt=1e-3" not in lines  # the peer did not run it: no cell


BRIDGE_SETTINGS = {"steps": 4000, "batch": 256, "lr": 1e-2, "width": 64, "sigma": 1.0, "eval": 2000,
                   "sde_steps": 100, "sde_tol": 1e-2, "rtol": 1e-4, "eval_draws": 1}


@pytest.mark.parametrize("init", ["same", "native"])
def test_bridges_history_keeps_the_chosen_init(init):
    def row(w2, **extra):
        return {**_bridge_row("flowjax_fm", "SDE EM 100", 0, w2), "quick": False, **BRIDGE_SETTINGS, **extra}

    rows = [row(0.5), row(0.4, init="native"), row(0.3, init="same"), row(0.2, init="same", steps=60)]
    ctx = _ctx(bb.SUITE, init=init, **BRIDGE_SETTINGS)
    shown = bb.history(ctx, rows)
    assert [r["w2"] for r in shown] == ([0.3] if init == "same" else [0.4])  # the newest of its init
    rows_peer = [{**r, "library": "torchcfm"} for r in shown]
    assert f"cell by cell (init: {init})" in bb.extra_md(ctx, shown + rows_peer)
    assert f"Init: **{init}**" in bb.init_words(bb.init_of(shown))
    assert bb.init_of([{"w2": 1.0}]) == "native"  # a row from before the flag


def test_same_init_copies_torchcfm_weights_into_ours():
    pytest.importorskip("torchcfm")
    from flax import nnx

    import flowjax_fm as fm

    (net,), _ = bb.torch_mlps(3, 16, 1)
    (again,), _ = bb.torch_mlps(3, 16, 1)  # the seed fixes torch's networks
    assert all((a == b).all() for a, b in zip(net.state_dict().values(), again.state_dict().values(),
                                                       strict=True))
    model = fm.models.MLP(2, (16, 16, 16), activation="selu", rngs=nnx.Rngs(0))
    assert bb.copy_torch_init(model, net, 0) <= bb.INIT_TOL
    first = net.net[0].weight.detach().numpy()
    assert (model.layers[0].kernel[...] == first.T).all()  # torch (out, in) is our (in, out)
    with pytest.raises(ValueError, match="time_frequencies=0"):  # time fed differently: refused
        bb.copy_torch_init(fm.models.MLP(2, (16, 16, 16), activation="selu", time_frequencies=2,
                                         rngs=nnx.Rngs(0)), net, 0)
    with pytest.raises(ValueError, match="layer"):
        bb.copy_torch_init(fm.models.MLP(2, (16, 16), activation="selu", rngs=nnx.Rngs(0)), net, 0)


def test_trajectory_tables_compare_per_held_out_time():
    def row(method, seed, prev, t0=None):
        return {"suite": "trajectory", "held": 2, "t_held": 0.5, "seed": seed, "method": method,
                "w2_prev": prev, "w2_t0": t0, "w2_floor": 0.1, "nfe": 20, "train_s": 5.0,
                "steps_per_s": 400.0, "final_loss": 1.0}

    rows = [row("flowjax_fm", s, 0.3, 0.5) for s in (0, 1)] + [row("torchcfm", s, 0.4, 0.45) for s in (0, 1)]
    rows += [row("McCann", s, 0.35) for s in (0, 1)] + [row("copy previous", s, 1.1) for s in (0, 1)]
    ctx = _ctx(bt.SUITE)
    table = bt.table_rows(ctx, rows)
    assert [t["method"] for t in table] == list(bt.METHODS)
    assert [cell(table[2]) for _, cell in bt.COLUMNS][3:5] == ["0.350 +- 0.000", "-"]
    md = bt.extra_md(ctx, rows)
    assert "| 0.5 | from t_{k-1} | 0.300 | 0.400 | yes | 2/2 | 0.350 |" in md
    assert "| 0.5 | from t_0 | 0.500 | 0.450 | **no** | 0/2 | 0.350 |" in md
    assert "per held-out time (init: native)" in md  # rows without the field: native
    settings = {"steps": 3000, "batch": 256, "lr": 1e-3, "width": 64, "sigma": 0.1, "n": 1000, "rtol": 1e-4}
    old = [{**r, "quick": False, **settings} for r in rows]
    new = [{**r, "init": "same", "w2_prev": 0.25} for r in old]
    assert {r["w2_prev"] for r in bt.history(_ctx(bt.SUITE, init="same", **settings), old + new)
            if r["method"] == "flowjax_fm"} == {0.25}
    assert {r["w2_prev"] for r in bt.history(_ctx(bt.SUITE, init="native", **settings), old + new)
            if r["method"] == "flowjax_fm"} == {0.3}


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not the tests' fake devices
    env.update(TMPDIR=str(tmp_path), MPLBACKEND="Agg", PYTHONWARNINGS="ignore",
               FLOWJAX_FM_BENCH_RESULTS=str(tmp_path),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return env


@pytest.mark.slow
@pytest.mark.parametrize("module, name", [("bench_bridges", "bridges"), ("bench_trajectory", "trajectory")])
def test_quick_mode_runs(module, name, tmp_path):
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick"], cwd=ROOT,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    rows = [json.loads(line) for line in (tmp_path / f"{name}_quick.jsonl").read_text().splitlines()]
    assert rows and all(r["device_kind"] and r["versions"]["jax"] and r["quick"] for r in rows)
    libs = {r.get("library", r.get("method")) for r in rows}
    assert "flowjax_fm" in libs
    assert all(r["init"] == "same" for r in rows)  # the default
    for r in rows:
        if r.get("library", r.get("method")) == "flowjax_fm":
            assert r.get("w2", r.get("w2_prev")) is not None and r["train_s"] > 0
            assert r["init_max_diff"] <= 1e-5  # started from torchcfm's network
    assert (tmp_path / f"{name}_quick.md").read_text().startswith("# ")
    assert (tmp_path / f"{name}_quick.png").stat().st_size > 0
