"""Bad inputs of the solves (fm.sampling, fm.likelihood, the flow metrics) and the set metrics
(mmd, the classifier metrics): option ranges, dtypes, and numerical failures raised or reported.

Every solve honours one ``throw`` policy: a failed solve (NaN or exploding field under fixed
steps, ``max_steps`` reached) raises by default and is reported in the result with
``throw=False`` (``success`` False; ``nan`` for scalar results; ``-1`` for an NFE count).
"""

from __future__ import annotations

import functools
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from bad_input import Case

S, L, M = fm.sampling, fm.likelihood, fm.metrics

X = jnp.ones((4, 2))
XI = np.zeros((4, 2), np.int32)
v = lambda x, t: -x
nan_field = lambda x, t: x * jnp.nan
explode = lambda x, t: x**3 * 100.0
stiff = lambda x, t: -1e4 * (x - jnp.cos(t)[:, None])
FIX = dict(solver="euler", num_steps=2)  # a cheap fixed-step solve


def _block(f):
    """Run ``f`` and wait for its result (a run-time error surfaces on the first read)."""
    return lambda: jax.block_until_ready(f())


@functools.cache
def _clf():
    """An abstract classifier (shapes only, no initialisation): the checks run before any use."""
    from flax import nnx

    return nnx.eval_shape(lambda: M.DigitClassifier((8, 8, 1), 3, width=2, feature_dim=4, rngs=nnx.Rngs(0)))


def _not_a_classifier_file():
    path = os.path.join(tempfile.mkdtemp(), "other.npz")
    np.savez(path, weights=np.zeros(3))
    return M.load_classifier(path)


IMG = np.zeros((4, 8, 8, 1), np.float32)
LAB = np.array([0, 1, 2, 0])
KEY = jax.random.key(0)


def _cases(name: str, fn, rows) -> list[Case]:
    out = []
    for row in rows:
        label, kwargs, error, match = row[:4]
        args = row[4] if len(row) > 4 else None
        call = (lambda a=args, k=kwargs: fn(*a, **k)) if args is not None else (lambda k=kwargs: fn(**k))
        out.append(Case(name, label, call, error, match))
    return out


def _reported(name: str, label: str, call, predicate) -> Case:
    return Case(name, label, call, error=None, reported=predicate)


not_success = lambda r: not bool(r.success)
all_nan = lambda r: bool(jnp.isnan(r).all())


# -- fm.sampling -----------------------------------------------------------------------
_SAMPLE_ROWS = [
    ("rtol=-1", dict(rtol=-1.0), ValueError, r"rtol must be a finite number in \(0, inf\), got -1"),
    ("atol=0", dict(atol=0.0), ValueError, r"atol must be a finite number in \(0, inf\)"),
    ("atol=nan", dict(atol=float("nan")), ValueError, r"atol must be a finite number"),
    ("t0=nan", dict(t0=float("nan")), ValueError, r"t0 must be a finite number"),
    ("t1=inf", dict(t1=float("inf")), ValueError, r"t1 must be a finite number"),
    ("t0=t1", dict(t0=0.5, t1=0.5), ValueError, r"t0 and t1 must differ"),
    ("num_steps=0", dict(solver="euler", num_steps=0), ValueError, r"num_steps must be an int >= 1, got 0"),
    (
        "num_steps=True",
        dict(solver="euler", num_steps=True),
        ValueError,
        r"num_steps must be an int >= 1, got True",
    ),
    ("num_steps=2.5", dict(solver="euler", num_steps=2.5), ValueError, r"num_steps must be an int >= 1"),
    ("max_steps=0", dict(max_steps=0), ValueError, r"max_steps must be an int >= 1"),
    (
        "trajectory_points=1",
        dict(save_trajectory=True, trajectory_points=1),
        ValueError,
        r"trajectory_points must be an int >= 2",
    ),
    ("trajectory_points=True", dict(trajectory_points=True), ValueError, r"trajectory_points must be an int"),
    ("solver=rk45", dict(solver="rk45"), ValueError, r"unknown solver 'rk45'.*euler, midpoint"),
    ("solver=3", dict(solver=3), ValueError, r"solver must be one of"),
    ("adjoint=nope", dict(adjoint="nope"), ValueError, r"unknown adjoint"),
    ("controller=nope", dict(stepsize_controller="nope"), ValueError, r"unknown stepsize_controller"),
    ("throw=1", dict(throw=1), ValueError, r"throw must be True or False, got 1"),
    (
        "save_trajectory=yes",
        dict(save_trajectory="yes"),
        ValueError,
        r"save_trajectory must be True or False",
    ),
    ("euler-adaptive", dict(solver="euler"), ValueError, r"no error estimate"),
]

CASES: list[Case] = []
CASES += _cases("sampling.sample", lambda **k: S.sample(v, X, **k), _SAMPLE_ROWS)
CASES += [
    Case(
        "sampling.sample",
        "x0-int",
        lambda: S.sample(v, XI),
        ValueError,
        r"x0 must be a floating-point array, got dtype int32 and shape \(4, 2\)",
    ),
    Case(
        "sampling.sample",
        "x0-1d",
        lambda: S.sample(v, jnp.ones(3)),
        ValueError,
        r"at least 2D; got shape \(3,\)",
    ),
    Case("sampling.sample", "x0-empty", lambda: S.sample(v, jnp.ones((0, 2))), ValueError, r"empty batch"),
    Case("sampling.sample", "x0-str", lambda: S.sample(v, "abc"), ValueError, r"x0 must be a"),
    Case(
        "sampling.sample",
        "field-not-callable",
        lambda: S.sample(3, X),
        TypeError,
        r"vector_field must be callable",
    ),
    Case(
        "sampling.sample",
        "field-shape",
        lambda: S.sample(lambda x, t: x[:, :1], X),
        ValueError,
        r"must return the shape and dtype of x, \(4, 2\) float32; got \(4, 1\)",
    ),
    Case(
        "sampling.sample",
        "nan-euler-raises",
        _block(lambda: S.sample(nan_field, X, **FIX).x),
        RuntimeError,
        r"fm.sampling.sample: the fixed-step Euler solve .* non-finite",
    ),
    Case(
        "sampling.sample",
        "explode-rk4-raises",
        _block(lambda: S.sample(explode, X, solver="rk4", num_steps=10).x),
        RuntimeError,
        r"non-finite",
    ),
    Case(
        "sampling.sample",
        "max_steps-raises",
        _block(lambda: S.sample(stiff, X, max_steps=8).x),
        RuntimeError,
        r"max_steps=8 reached",
    ),
    _reported(
        "sampling.sample",
        "nan-euler-reported",
        lambda: S.sample(nan_field, X, throw=False, **FIX),
        not_success,
    ),
    _reported(
        "sampling.sample",
        "nan-euler-reported-jit",
        lambda: jax.jit(lambda x: S.sample(nan_field, x, throw=False, **FIX))(X),
        not_success,
    ),
    _reported(
        "sampling.sample",
        "explode-rk4-reported",
        lambda: S.sample(explode, X, solver="rk4", num_steps=10, throw=False),
        not_success,
    ),
    _reported(
        "sampling.sample",
        "max_steps-reported",
        lambda: S.sample(stiff, X, max_steps=8, throw=False),
        not_success,
    ),
]

CASES += _cases(
    "sampling.encode",
    lambda **k: S.encode(v, X, **k),
    [
        ("rtol=-1", dict(rtol=-1.0), ValueError, r"rtol must be a finite number in \(0, inf\)"),
        ("t_data=nan", dict(t_data=float("nan")), ValueError, r"t_data must be a finite number"),
        ("t_data=t_source", dict(t_data=0.0), ValueError, r"t_data and t_source must differ"),
        ("num_steps=-1", dict(solver="euler", num_steps=-1), ValueError, r"num_steps must be an int >= 1"),
        ("throw=None", dict(throw=None), ValueError, r"throw must be True or False"),
    ],
)
CASES += [
    Case(
        "sampling.encode",
        "x1-int",
        lambda: S.encode(v, XI),
        ValueError,
        r"x1 must be a floating-point array, got dtype int32 and shape \(4, 2\)",
    ),
    _reported(
        "sampling.encode", "nan-reported", lambda: S.encode(nan_field, X, throw=False, **FIX), not_success
    ),
]

CASES += _cases(
    "sampling.round_trip_error",
    lambda **k: S.round_trip_error(v, X, **k),
    [
        ("rtol=-1", dict(rtol=-1.0), ValueError, r"rtol must be a finite number"),
        ("num_steps=0", dict(solver="rk4", num_steps=0), ValueError, r"num_steps must be an int >= 1"),
        ("throw=1", dict(throw=1), ValueError, r"throw must be True or False"),
    ],
)
CASES += [
    Case(
        "sampling.round_trip_error",
        "x0-int",
        lambda: S.round_trip_error(v, XI),
        ValueError,
        r"floating-point array, got dtype int32",
    ),
    _reported(
        "sampling.round_trip_error",
        "nan-reported",
        lambda: S.round_trip_error(nan_field, X, throw=False, **FIX),
        all_nan,
    ),
]

_cond_v = lambda x, t, cond: x
CASES += [
    Case(
        "sampling.guided_field",
        "scale=nan",
        lambda: S.guided_field(_cond_v, float("nan"), 3),
        ValueError,
        r"scale must be a finite number",
    ),
    Case(
        "sampling.guided_field",
        "scale=str",
        lambda: S.guided_field(_cond_v, "2", 3),
        ValueError,
        r"scale must be a real number",
    ),
    Case(
        "sampling.guided_field",
        "null_label=-1",
        lambda: S.guided_field(_cond_v, 2.0, -1),
        ValueError,
        r"null_label must be an int >= 0, got -1",
    ),
    Case(
        "sampling.guided_field",
        "null_label=1.5",
        lambda: S.guided_field(_cond_v, 2.0, 1.5),
        ValueError,
        r"null_label must be an int >= 0",
    ),
    Case(
        "sampling.guided_field",
        "neither-null",
        lambda: S.guided_field(_cond_v, 2.0),
        ValueError,
        r"exactly one of null_label",
    ),
    Case(
        "sampling.guided_field",
        "field-not-callable",
        lambda: S.guided_field(None, 2.0, 3),
        TypeError,
        r"vector_field must be callable",
    ),
    Case(
        "sampling.guided_field",
        "float-labels",
        lambda: S.guided_field(_cond_v, 2.0, 3)(X, jnp.zeros(4), jnp.zeros(4)),
        ValueError,
        r"cond must be integer labels of shape \(4,\)",
    ),
]

# -- fm.likelihood ---------------------------------------------------------------------
CASES += _cases(
    "likelihood.log_prob",
    lambda **k: L.log_prob(v, X, **k),
    [
        (
            "estimator=x",
            dict(estimator="x"),
            ValueError,
            r"unknown estimator 'x'; choose one of 'exact', 'hutchinson'",
        ),
        (
            "num_probes=0",
            dict(estimator="hutchinson", key=KEY, num_probes=0),
            ValueError,
            r"num_probes must be an int >= 1",
        ),
        (
            "num_probes=True",
            dict(estimator="hutchinson", key=KEY, num_probes=True),
            ValueError,
            r"num_probes must be an int >= 1, got True",
        ),
        ("probe=uniform", dict(probe="uniform"), ValueError, r"unknown probe 'uniform'"),
        ("hutchinson-no-key", dict(estimator="hutchinson"), ValueError, r"pass key="),
        ("rtol=0", dict(rtol=0.0), ValueError, r"rtol must be a finite number in \(0, inf\)"),
        ("t_data=nan", dict(t_data=float("nan")), ValueError, r"t_data must be a finite number"),
        ("max_steps=0", dict(max_steps=0), ValueError, r"max_steps must be an int >= 1"),
        ("throw=no", dict(throw="no"), ValueError, r"throw must be True or False"),
        ("solver=nope", dict(solver="nope"), ValueError, r"unknown solver"),
        (
            "source_log_prob=3",
            dict(source_log_prob=3),
            TypeError,
            r"source_log_prob must be None or a callable",
        ),
        (
            "source_log_prob-shape",
            dict(source_log_prob=lambda x0: jnp.zeros(x0.shape)),
            ValueError,
            r"source_log_prob must return shape \(4,\)",
        ),
    ],
)
CASES += [
    Case(
        "likelihood.log_prob",
        "x1-int",
        lambda: L.log_prob(v, XI),
        ValueError,
        r"x1 must be a floating-point array, got dtype int32 and shape \(4, 2\)",
    ),
    Case(
        "likelihood.log_prob",
        "nan-raises",
        _block(lambda: L.log_prob(nan_field, X, **FIX)),
        RuntimeError,
        r"fm.likelihood.log_prob.*non-finite",
    ),
    _reported(
        "likelihood.log_prob", "nan-reported", lambda: L.log_prob(nan_field, X, throw=False, **FIX), all_nan
    ),
    _reported(
        "likelihood.log_prob",
        "max_steps-reported",
        lambda: L.log_prob(stiff, X, solver="heun", max_steps=8, throw=False),
        all_nan,
    ),
]

CASES += _cases(
    "likelihood.divergence",
    lambda **k: L.divergence(v, X, jnp.zeros(4), **k),
    [
        ("estimator=trace", dict(estimator="trace"), ValueError, r"unknown estimator 'trace'"),
        (
            "num_probes=0",
            dict(estimator="hutchinson", key=KEY, num_probes=0),
            ValueError,
            r"num_probes must be an int >= 1",
        ),
        ("probe=x", dict(probe="x"), ValueError, r"unknown probe"),
    ],
)
CASES += [
    Case(
        "likelihood.divergence",
        "x-int",
        lambda: L.divergence(v, XI, jnp.zeros(4)),
        ValueError,
        r"x must be a floating-point array, got dtype int32",
    ),
    Case(
        "likelihood.divergence",
        "t-shape",
        lambda: L.divergence(v, X, jnp.zeros(3)),
        ValueError,
        r"t must have shape \(4,\), got \(3,\)",
    ),
]
CASES += _cases(
    "likelihood.bits_per_dim",
    lambda **k: L.bits_per_dim(jnp.zeros(3), **k),
    [
        ("event_size=0", dict(event_size=0), ValueError, r"event_size must be an int >= 1, got 0"),
        ("event_size=True", dict(event_size=True), ValueError, r"event_size must be an int >= 1, got True"),
        ("event_size=2.0", dict(event_size=2.0), ValueError, r"event_size must be an int >= 1"),
    ],
)
CASES += [
    Case(
        "likelihood.standard_normal_log_prob",
        "x0-int",
        lambda: L.standard_normal_log_prob(XI),
        ValueError,
        r"x0 must be a floating-point array",
    ),
    Case(
        "likelihood.standard_normal_log_prob",
        "x0-1d",
        lambda: L.standard_normal_log_prob(jnp.ones(3)),
        ValueError,
        r"at least 2D",
    ),
]

# -- fm.metrics: flow diagnostics ------------------------------------------------------
_FLOW_ROWS = [
    ("rtol=-1", dict(rtol=-1.0), ValueError, r"rtol must be a finite number in \(0, inf\)"),
    ("num_steps=True", dict(solver="rk4", num_steps=True), ValueError, r"num_steps must be an int >= 1"),
    ("max_steps=0", dict(max_steps=0), ValueError, r"max_steps must be an int >= 1"),
    ("throw=1", dict(throw=1), ValueError, r"throw must be True or False"),
    ("euler-adaptive", dict(solver="euler"), ValueError, r"no error estimate"),
]
for _name, _fn, _pred in (
    ("flow_integrals", M.flow_integrals, lambda r: not bool(r["success"])),
    ("path_energy", M.path_energy, all_nan),
    ("straightness", M.straightness, all_nan),
    ("curvature", M.curvature, all_nan),
):
    CASES += _cases(f"metrics.{_name}", lambda _f=_fn, **k: _f(v, X, **k), _FLOW_ROWS)
    CASES += [
        Case(
            f"metrics.{_name}",
            "x0-int",
            lambda _f=_fn: _f(v, XI),
            ValueError,
            r"x0 must be a floating-point array",
        ),
        _reported(
            f"metrics.{_name}",
            "nan-reported",
            lambda _f=_fn: _f(nan_field, X, solver="rk4", num_steps=2, throw=False),
            _pred,
        ),
    ]
CASES += [
    Case(
        "metrics.flow_integrals",
        "nan-raises",
        _block(lambda: M.flow_integrals(nan_field, X, solver="rk4", num_steps=2)["x1"]),
        RuntimeError,
        r"fm.metrics.flow_integrals.*non-finite",
    ),
]

CASES += _cases(
    "metrics.nfe_at_tolerance",
    lambda **k: M.nfe_at_tolerance(v, X, **k),
    [
        ("rtol=-1", dict(rtol=-1.0), ValueError, r"rtol must be a finite number in \(0, inf\)"),
        ("atol=inf", dict(atol=float("inf")), ValueError, r"atol must be a finite number"),
        ("solver=euler", dict(solver="euler"), ValueError, r"no error estimate"),
        ("max_steps=-3", dict(max_steps=-3), ValueError, r"max_steps must be an int >= 1"),
        ("throw=1", dict(throw=1), ValueError, r"throw must be True or False"),
    ],
)
CASES += [
    Case(
        "metrics.nfe_at_tolerance",
        "max_steps-raises",
        _block(lambda: M.nfe_at_tolerance(stiff, X, max_steps=8)),
        RuntimeError,
        r"max_steps=8 reached",
    ),
    _reported(
        "metrics.nfe_at_tolerance",
        "max_steps-reported",
        lambda: M.nfe_at_tolerance(stiff, X, max_steps=8, throw=False),
        lambda r: int(r) == -1,
    ),
]

_REF = np.ones((4, 2), np.float32)
CASES += _cases(
    "metrics.evaluate",
    lambda **k: M.evaluate(v, X, _REF, **k),
    [
        ("rtol=-1", dict(rtol=-1.0), ValueError, r"rtol must be a finite number"),
        ("max_exact=-1", dict(max_exact=-1), ValueError, r"max_exact must be an int >= 0"),
        ("throw=1", dict(throw=1, **FIX), ValueError, r"throw must be True or False"),
    ],
)
CASES += [
    Case(
        "metrics.evaluate",
        "x_ref-nan",
        lambda: M.evaluate(v, X, np.array([[0.0, np.nan]] * 4)),
        ValueError,
        r"x_ref contains 4 non-finite values",
    ),
    Case(
        "metrics.evaluate",
        "x_ref-event",
        lambda: M.evaluate(v, X, np.zeros((4, 3))),
        ValueError,
        r"x0 and x_ref must share the event shape",
    ),
    Case(
        "metrics.evaluate",
        "x_ref-1d",
        lambda: M.evaluate(v, X, np.zeros(4)),
        ValueError,
        r"x_ref must be batched",
    ),
    _reported(
        "metrics.evaluate",
        "nan-reported",
        lambda: M.evaluate(nan_field, X, _REF, throw=False, **FIX),
        lambda r: r["success"] is False,
    ),
]

# -- fm.metrics: set metrics -----------------------------------------------------------
_Y = jnp.zeros((3, 2))
CASES += [
    Case(
        "metrics.mmd",
        "x-nan",
        lambda: M.mmd(jnp.array([[0.0, jnp.nan], [1.0, 1.0]]), _Y),
        ValueError,
        r"x contains 1 non-finite value \(NaN or inf\); first in row 0",
    ),
    Case(
        "metrics.mmd",
        "y-inf",
        lambda: M.mmd(_Y, jnp.array([[0.0, 1.0], [jnp.inf, 1.0]])),
        ValueError,
        r"y contains 1 non-finite value .* row 1",
    ),
    Case(
        "metrics.mmd",
        "one-point",
        lambda: M.mmd(jnp.zeros((1, 2)), _Y),
        ValueError,
        r"x must have shape \(N, \*event\) with N >= 2 points, got shape \(1, 2\) \(a single point",
    ),
    Case(
        "metrics.mmd",
        "empty",
        lambda: M.mmd(_Y, jnp.zeros((0, 2))),
        ValueError,
        r"y must have shape .* N >= 2",
    ),
    Case("metrics.mmd", "x-1d", lambda: M.mmd(jnp.zeros(4), _Y), ValueError, r"got shape \(4,\)"),
    Case(
        "metrics.mmd",
        "event-mismatch",
        lambda: M.mmd(_Y, jnp.zeros((3, 3))),
        ValueError,
        r"same event shape, got shapes \(3, 2\) and \(3, 3\)",
    ),
    Case(
        "metrics.mmd",
        "bandwidths=0",
        lambda: M.mmd(_Y, _Y, bandwidths=0.0),
        ValueError,
        r"bandwidths must be a finite number in \(0, inf\)",
    ),
    Case(
        "metrics.mmd",
        "bandwidths-nan",
        lambda: M.mmd(_Y, _Y, bandwidths=[1.0, float("nan")]),
        ValueError,
        r"bandwidths must be a finite number in \(0, inf\), got an array containing nan",
    ),
    Case(
        "metrics.mmd", "bandwidths-empty", lambda: M.mmd(_Y, _Y, bandwidths=[]), ValueError, r"non-empty 1D"
    ),
]

CASES += [
    Case(
        "metrics.classifier_accuracy",
        "model=None",
        lambda: M.classifier_accuracy(None, IMG, LAB),
        TypeError,
        r"model must be a DigitClassifier",
    ),
    Case(
        "metrics.classifier_accuracy",
        "labels-float",
        lambda: M.classifier_accuracy(_clf(), IMG, LAB * 1.0),
        ValueError,
        r"labels must be integer class labels",
    ),
    Case(
        "metrics.classifier_accuracy",
        "labels-length",
        lambda: M.classifier_accuracy(_clf(), IMG, LAB[:3]),
        ValueError,
        r"labels must have shape \(4,\), got \(3,\)",
    ),
    Case(
        "metrics.classifier_accuracy",
        "labels-range",
        lambda: M.classifier_accuracy(_clf(), IMG, LAB + 1),
        ValueError,
        r"labels must lie in \[0, 3\)",
    ),
    Case(
        "metrics.classifier_accuracy",
        "image-shape",
        lambda: M.classifier_accuracy(_clf(), np.zeros((4, 6, 6, 1)), LAB),
        ValueError,
        r"built for images \(8, 8, 1\), got x of shape \(4, 6, 6, 1\)",
    ),
    Case(
        "metrics.classifier_features",
        "model=str",
        lambda: M.classifier_features("clf", IMG),
        TypeError,
        r"model must be a DigitClassifier",
    ),
    Case(
        "metrics.classifier_features",
        "x-3d",
        lambda: M.classifier_features(_clf(), IMG[..., 0]),
        ValueError,
        r"x must be batched with shape \(N, H, W, C\), at least 4D",
    ),
    Case(
        "metrics.classifier_features",
        "x-nan",
        lambda: M.classifier_features(_clf(), IMG * np.nan),
        ValueError,
        r"x contains 256 non-finite values",
    ),
    Case(
        "metrics.classifier_features",
        "x-complex",
        lambda: M.classifier_features(_clf(), IMG * 1j),
        ValueError,
        r"x must be real images",
    ),
    Case(
        "metrics.frechet_distance",
        "nan",
        lambda: M.frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2))),
        ValueError,
        r"feats_a contains 6 non-finite values",
    ),
    Case(
        "metrics.frechet_distance",
        "D-mismatch",
        lambda: M.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4))),
        ValueError,
        r"same D and N >= 2, got \(3, 2\) and \(3, 4\)",
    ),
    Case(
        "metrics.frechet_distance",
        "one-point",
        lambda: M.frechet_distance(np.zeros((1, 2)), np.zeros((3, 2))),
        ValueError,
        r"N >= 2",
    ),
    Case(
        "metrics.save_classifier",
        "model=None",
        lambda: M.save_classifier(None, "x.npz"),
        TypeError,
        r"model must be a DigitClassifier",
    ),
    Case(
        "metrics.save_classifier",
        "path=3",
        lambda: M.save_classifier(_clf(), 3),
        TypeError,
        r"path must be a str or os.PathLike",
    ),
    Case(
        "metrics.load_classifier",
        "path=None",
        lambda: M.load_classifier(None),
        TypeError,
        r"path must be a str or os.PathLike",
    ),
    Case(
        "metrics.load_classifier",
        "missing",
        lambda: M.load_classifier("/nonexistent/classifier.npz"),
        FileNotFoundError,
        r"no classifier file at '/nonexistent/classifier.npz'",
    ),
    Case(
        "metrics.load_classifier",
        "other-npz",
        _not_a_classifier_file,
        ValueError,
        r"is not a classifier saved by save_classifier",
    ),
]

_train = lambda **k: M.train_digit_classifier(k.pop("key", KEY), k.pop("x", IMG), k.pop("y", LAB), **k)
CASES += _cases(
    "metrics.train_digit_classifier",
    _train,
    [
        ("steps=0", dict(steps=0), ValueError, r"steps must be an int >= 1, got 0"),
        ("batch_size=True", dict(batch_size=True), ValueError, r"batch_size must be an int >= 1, got True"),
        ("lr=-1", dict(lr=-1.0), ValueError, r"lr must be a finite number in \(0, inf\)"),
        ("noise=nan", dict(noise=float("nan")), ValueError, r"noise must be a finite number in \[0, inf\)"),
        ("num_classes=0", dict(num_classes=0), ValueError, r"num_classes must be an int >= 1"),
        ("y-float", dict(y=LAB * 1.0), ValueError, r"y must be integer class labels"),
        ("y-range", dict(num_classes=2), ValueError, r"y must lie in \[0, 2\), got values from 0 to 2"),
        ("y-length", dict(y=LAB[:2]), ValueError, r"y must have shape \(4,\), got \(2,\)"),
        ("x-3d", dict(x=IMG[..., 0]), ValueError, r"x must be batched with shape \(N, H, W, C\)"),
        ("key=0", dict(key=0), TypeError, r"key must be a JAX random key"),
    ],
)
CASES += [
    Case(
        "metrics.train_or_load_classifier",
        "directory=None",
        lambda: M.train_or_load_classifier(None, KEY, IMG, LAB),
        TypeError,
        r"directory must be a str",
    ),
    Case(
        "metrics.train_or_load_classifier",
        "steps=0",
        lambda: M.train_or_load_classifier(tempfile.mkdtemp(), KEY, IMG, LAB, steps=0),
        ValueError,
        r"steps must be an int >= 1",
    ),
]

EXEMPT = {
    "sampling.SOLVER_NAMES": "a constant tuple of solver names",
    "sampling.RK4": "a diffrax solver class with no hyperparameters of ours (a Butcher tableau)",
    "sampling.RK4ThreeEighths": "a diffrax solver class with no hyperparameters of ours (a Butcher tableau)",
    "sampling.SampleResult": "a result type built by the solves",
    "likelihood.ESTIMATORS": "a constant tuple of estimator names",
    "likelihood.PROBES": "a constant tuple of probe names",
    "metrics.DigitClassifier": "models.DigitClassifier re-exported: its cases are the models'",
}
