"""The metric log of a run: metrics.jsonl rows, TensorBoard event files, resume, disabled loggers."""

import json
import math
import struct
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowjax_fm.experiments._logging import MetricLogger

# -- reading the files back, without TensorBoard -------------------------------------------


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path):
    """The Event protos of one TFRecord file: uint64 length, uint32 masked crc, data, uint32 crc."""
    from tensorboardX.proto.event_pb2 import Event

    events, raw = [], path.read_bytes()
    pos = 0
    while pos < len(raw):
        header = raw[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
        assert length_crc == _masked_crc32c(header)
        data = raw[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length : pos + 16 + length])
        assert data_crc == _masked_crc32c(data)
        events.append(Event.FromString(data))
        pos += 16 + length
    return events


def scalars(events):
    """(tag, step, value) of every scalar summary value, in file order."""
    return [(v.tag, e.step, v.simple_value) for e in events for v in e.summary.value]


def event_files(workdir):
    return sorted((workdir / "tensorboard").glob("events.out.tfevents.*"))


def rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def steps_per_chunk(steps):
    """``chunk_metrics`` as fit hands them on: per-step arrays, ``step`` before each update."""
    s = np.asarray(steps, dtype=np.int32)
    return {
        "loss": s.astype(np.float32),  # the loss at step k is k: window means are easy to write down
        "per_example": np.stack([s, 3 * s], axis=1).astype(np.float32),  # (n, 2): mean 2k
        "name": np.array(["x"] * len(s)),  # not numeric: skipped
        "step": s - 1,
    }


# -- jsonl ---------------------------------------------------------------------------------


def test_rows_hold_window_means_at_multiples_of_log_every_for_unaligned_chunks(tmp_path):
    before = time.time()
    with MetricLogger(tmp_path, log_every=4, tensorboard=False) as log:
        logged = [log.log_chunk(3 * c + 3, steps_per_chunk(range(3 * c + 1, 3 * c + 4))) for c in range(3)]
        logged.append(log.log_chunk(10, steps_per_chunk([10]), final=True))
    assert logged == [[], [4], [8], [10]]
    got = rows(tmp_path)
    assert [r["step"] for r in got] == [4, 8, 10]
    # windows (0, 4], (4, 8], (8, 10]: means of the steps in them
    assert [r["train/loss"] for r in got] == [2.5, 6.5, 9.5]
    assert [r["train/per_example"] for r in got] == [5.0, 13.0, 19.0]
    assert all(set(r) == {"step", "time", "train/loss", "train/per_example"} for r in got)
    assert all(before <= r["time"] <= time.time() and isinstance(r["time"], float) for r in got)


def test_final_row_is_not_repeated_and_a_gap_starts_a_new_window(tmp_path):
    with MetricLogger(tmp_path, log_every=2, tensorboard=False) as log:
        assert log.log_chunk(4, {"loss": np.arange(1.0, 5.0)}, final=True) == [2, 4]
        assert log.log_chunk(5, {"loss": np.array([5.0])}) == []
        # steps 11, 12 do not follow step 5: step 5's open window is dropped
        assert log.log_chunk(12, {"loss": jnp.array([11.0, 12.0])}) == [12]
    assert [(r["step"], r["train/loss"]) for r in rows(tmp_path)] == [(2, 1.5), (4, 3.5), (12, 11.5)]


def test_log_scalars_and_non_finite_values_are_null_in_json(tmp_path):
    with MetricLogger(tmp_path, log_every=1, tensorboard=False) as log:
        log.log_scalars(7, {"w2": jnp.float32(0.5), "solver": "tsit5", "nested": {"nfe": 12}, "bad": np.inf})
        log.log_scalars(7, {"x": np.array([2.0])}, prefix="")
        log.log_chunk(1, {"loss": np.array([np.nan])})
        with pytest.raises(ValueError, match=r"single number, got shape \(2,\)"):
            log.log_scalars(7, {"v": np.zeros(2)})
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = [{k: v for k, v in r.items() if k != "time"} for r in rows(tmp_path)]
    assert got == [
        {"step": 7, "eval/w2": 0.5, "eval/nested/nfe": 12.0, "eval/bad": None},
        {"step": 7, "x": 2.0},
        {"step": 1, "train/loss": None},
    ]


def test_rows_follow_fit_step_numbering(tmp_path):
    import dataclasses

    import flowjax_fm as fm

    def step(state, key, x0, x1):  # a step whose loss is the step it starts from
        loss = state.step.astype(jnp.float32) + 0.0 * jnp.mean(x1)
        return dataclasses.replace(state, step=state.step + 1), {"loss": loss, "x": x1}

    state = fm.training.TrainState(params=None, opt_state=None, ema=None, step=jnp.int32(0))
    src = lambda k, n: jax.random.normal(k, (n, 2))
    num_steps = 12
    with MetricLogger(tmp_path, log_every=4, tensorboard=False) as log:
        on_chunk = lambda state, m: log.log_chunk(int(state.step), m, final=int(state.step) == num_steps)
        _, history = fm.training.fit(
            step,
            state,
            jax.random.key(0),
            src,
            src,
            num_steps=num_steps,
            batch_size=3,
            progress=False,
            chunk_size=3,
            on_chunk=on_chunk,
        )
    got = rows(tmp_path)
    # history[k] is the step taking the state from k to k + 1: the row at step 4 averages k = 0..3
    assert [r["step"] for r in got] == [4, 8, 12]
    assert [r["train/loss"] for r in got] == [1.5, 5.5, 9.5]
    x = history["x"].astype(np.float64).reshape(num_steps, -1).mean(axis=1)
    np.testing.assert_allclose(
        [r["train/x"] for r in got], [x[0:4].mean(), x[4:8].mean(), x[8:].mean()], rtol=1e-6
    )


# -- TensorBoard ---------------------------------------------------------------------------


def test_event_file_holds_the_scalars(tmp_path):
    with MetricLogger(tmp_path, log_every=2) as log:
        log.log_chunk(3, {"loss": np.array([1.0, 2.0, 3.0])})
        log.log_chunk(5, {"loss": np.array([4.0, np.nan])}, final=True)
        log.log_scalars(5, {"w2": 0.25})
    (path,) = event_files(tmp_path)
    events = read_events(path)
    assert events[0].file_version == "brain.Event:2"
    got = scalars(events)
    assert [(tag, s) for tag, s, _ in got] == [
        ("train/loss", 2),
        ("train/loss", 4),
        ("train/loss", 5),
        ("eval/w2", 5),
    ]
    values = [v for _, _, v in got]
    assert values[0] == 1.5 and values[1] == 3.5 and math.isnan(values[2]) and values[3] == 0.25
    assert all(e.wall_time > 0 for e in events)


def test_tensorboard_false_writes_only_the_jsonl(tmp_path):
    with MetricLogger(tmp_path, log_every=1, tensorboard=False) as log:
        log.log_chunk(1, {"loss": np.ones(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


# -- resume --------------------------------------------------------------------------------


def test_a_second_logger_continues_the_files(tmp_path):
    with MetricLogger(tmp_path, log_every=2) as log:
        log.log_chunk(5, {"loss": np.arange(1.0, 6.0)})
    with MetricLogger(tmp_path, log_every=2) as log:  # same second, same process: a second event file
        log.log_chunk(8, {"loss": np.arange(6.0, 9.0)})
    assert [(r["step"], r["train/loss"]) for r in rows(tmp_path)] == [(2, 1.5), (4, 3.5), (6, 6.0), (8, 7.5)]
    first, second = event_files(tmp_path)
    assert [s for _, s, _ in scalars(read_events(first))] == [2, 4]
    assert [s for _, s, _ in scalars(read_events(second))] == [6, 8]


def test_start_step_drops_what_an_interrupted_run_wrote_after_it(tmp_path):
    with MetricLogger(tmp_path, log_every=2) as log:
        log.log_chunk(8, {"loss": np.arange(1.0, 9.0)})
        log.log_scalars(4, {"w2": 1.0})
        log.log_scalars(6, {"w2": 2.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "ti')  # a line cut short by a crash
    with MetricLogger(tmp_path, log_every=2, start_step=4) as log:
        log.log_chunk(6, {"loss": np.array([50.0, 60.0])})
    got = [(r["step"], r.get("train/loss", r.get("eval/w2"))) for r in rows(tmp_path)]
    assert got == [(2, 1.5), (4, 3.5), (4, 1.0), (6, 55.0)]
    _, second = event_files(tmp_path)
    purge = [e for e in read_events(second) if e.HasField("session_log")]
    assert [(e.step, e.session_log.status) for e in purge] == [(5, 1)]  # SessionLog.START at step 5


def test_a_line_cut_short_stays_on_its_own_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 2, "train/loss": 1.0}\n{"step": 4, "tr')
    with MetricLogger(tmp_path, log_every=2, tensorboard=False) as log:
        log.log_chunk(6, {"loss": np.array([5.0, 6.0])})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[1] == '{"step": 4, "tr'
    assert json.loads(lines[2])["step"] == 6


# -- disabled, errors ----------------------------------------------------------------------


def test_disabled_logger_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    with MetricLogger(workdir, log_every=2, enabled=False, start_step=0) as log:
        assert log.log_chunk(4, {"loss": np.ones(4)}, final=True) == [2, 4]
        log.log_scalars(4, {"w2": 1.0})
    assert not workdir.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("log_every", [0, -3, 2.5, True, "10"])
def test_bad_log_every_raises(tmp_path, log_every):
    with pytest.raises(ValueError, match=f"log_every must be an int >= 1, got {log_every!r}"):
        MetricLogger(tmp_path, log_every=log_every)
    assert list(tmp_path.iterdir()) == []


def test_bad_chunks_raise(tmp_path):
    log = MetricLogger(tmp_path, log_every=2, tensorboard=False)
    with pytest.raises(ValueError, match=r"same n, got shapes \{'train/loss': \(3,\), 'train/t': \(2, 4\)\}"):
        log.log_chunk(3, {"loss": np.ones(3), "t": np.ones((2, 4))})
    with pytest.raises(ValueError, match=r"one row per step.*\(\)"):
        log.log_chunk(3, {"loss": np.float32(1.0)})
    with pytest.raises(ValueError, match="state_step_after must be an int >= 3, got 2"):
        log.log_chunk(2, {"loss": np.ones(3)})
    with pytest.raises(TypeError, match="dict of per-step arrays"):
        log.log_chunk(3, [1.0, 2.0, 3.0])
    assert log.log_chunk(0, {"loss": np.ones(0)}) == []
    log.close()
    log.close()  # a second close does nothing
    with pytest.raises(ValueError, match="is closed"):
        log.log_scalars(1, {"w2": 1.0})
    assert (tmp_path / "metrics.jsonl").read_text() == ""
