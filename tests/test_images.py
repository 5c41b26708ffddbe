"""Image data loaders, label dropout / label-aware pairing, the image metrics, a training smoke test."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.training import _images as images

# --- data -------------------------------------------------------------------------------


def test_load_digits():
    x, y = fm.data.load_digits()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int32
    assert x.min() == -1.0 and x.max() == 1.0
    assert sorted(np.unique(y).tolist()) == list(range(10))


def test_load_array_dataset_roundtrip(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3))
    np.save(tmp_path / "x.npy", x)
    got, y = fm.data.load_array_dataset(tmp_path / "x.npy", divisor=4)
    assert y is None and got.dtype == np.float32
    np.testing.assert_allclose(got, x.astype(np.float32))
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(6))
    got, y = fm.data.load_array_dataset(tmp_path / "xy.npz")
    assert y.dtype == np.int32 and y.tolist() == list(range(6))


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (np.zeros((5, 8, 8)), None, {}, r"\(N, H, W, C\), got shape \(5, 8, 8\)"),
        (np.zeros((5, 1, 8, 8)), None, {}, r"shape \(5, 1, 8, 8\) looks channels-first"),
        (np.zeros((5, 3, 32, 32)), None, {}, "looks channels-first"),
        (np.zeros((5, 8, 8, 1), np.int64), None, {}, "must be floating point"),
        (np.zeros((5, 6, 6, 1)), None, {"divisor": 4}, r"divisible by 4, got shape \(5, 6, 6, 1\)"),
        (np.zeros((5, 8, 8, 1)), np.arange(4), {}, r"labels must have shape \(5,\)"),
        (np.zeros((5, 8, 8, 1)), np.array([0, 1, 2, 3, -1]), {}, r"lie in \[0, 3\]"),
        (np.zeros((5, 8, 8, 1)), np.arange(5), {"num_classes": 3}, r"lie in \[0, 2\], got .* 4\]"),
        (np.zeros((5, 8, 8, 1)), np.zeros(5), {}, "labels must be integers"),
        (np.full((5, 8, 8, 1), np.nan), None, {}, "non-finite"),
    ],
)
def test_load_array_dataset_errors(tmp_path, x, y, kwargs, match):
    path = tmp_path / "d.npz"
    if y is None:
        np.savez(path, x=x)
    else:
        np.savez(path, x=x, y=y)
    with pytest.raises(ValueError, match=match) as err:
        fm.data.load_array_dataset(path, **kwargs)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_load_array_dataset_unreadable(tmp_path):
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="cannot read"):
        fm.data.load_array_dataset(tmp_path / "bad.npy")
    np.savez(tmp_path / "noxs.npz", images=np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="needs an array 'x'"):
        fm.data.load_array_dataset(tmp_path / "noxs.npz")


# --- label dropout and label-aware pairing ----------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_label_dropout_rate(p):
    n = 20_000
    labels = jnp.arange(n, dtype=jnp.int32) % 10
    out = images.label_dropout(jax.random.key(0), labels, p, 10)
    dropped = np.asarray(out == 10)
    se = np.sqrt(p * (1 - p) / n)
    assert abs(dropped.mean() - p) < 4 * se
    kept = ~dropped
    np.testing.assert_array_equal(np.asarray(out)[kept], np.asarray(labels)[kept])


@pytest.mark.parametrize("coupling", [fm.couplings.ExactOTCoupling(), fm.couplings.IndependentCoupling()])
def test_pairing_uses_true_labels_model_sees_dropped(coupling):
    """Pairs never cross true labels even though half the network's labels are null."""
    k0, k1 = jax.random.split(jax.random.key(1))
    n = 64
    labels = jnp.arange(n, dtype=jnp.int32) % 4
    x1 = jax.random.normal(k1, (n, 3)) + 5.0 * labels[:, None]
    x0 = jax.random.normal(k0, (n, 3))
    _, x1p, labels_p, model_labels, pairing = images.conditional_batch(
        jax.random.key(2), x0, x1, labels, coupling=coupling, p=0.5, null_label=4
    )
    # the noise rows carry the labels of the data rows at the same positions
    np.testing.assert_array_equal(labels[pairing.source], labels[pairing.target])
    np.testing.assert_array_equal(labels_p, labels[pairing.target])
    np.testing.assert_allclose(x1p, x1[pairing.target])
    dropped = np.asarray(model_labels == 4)
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_array_equal(np.asarray(model_labels)[~dropped], np.asarray(labels_p)[~dropped])
    # pairing on the dropped labels instead would cross classes
    if isinstance(coupling, fm.couplings.ExactOTCoupling):
        wrong = coupling(jax.random.key(3), x0, x1, cond0=model_labels, cond1=model_labels)
        assert bool((labels[wrong.source] != labels[wrong.target]).any())


class _Spy(nnx.Module):
    """A conditional model that records the labels it is called with (through a host callback)."""

    def __init__(self, seen):
        self.num_classes = 3
        self.w = nnx.Param(jnp.zeros(()))
        self._seen = seen

    def __call__(self, x, t, cond=None):
        jax.debug.callback(lambda c: self._seen.append(np.asarray(c)), cond)
        return x * self.w[...]


def test_conditional_step_feeds_dropped_labels_to_model():
    seen = []
    model = _Spy(seen)
    opt = optax.sgd(0.1)
    step = images.make_conditional_train_step(
        model,
        optimizer=opt,
        path=fm.paths.CondOTPath(),
        dropout=0.5,
        coupling=fm.couplings.ExactOTCoupling(),
    )
    labels = jnp.arange(400, dtype=jnp.int32) % 3
    x1 = jax.random.normal(jax.random.key(0), (400, 2))
    state, metrics = jax.jit(step)(
        fm.training.init_state(model, opt), jax.random.key(1), x1 * 0, x1, cond=labels
    )
    jax.effects_barrier()
    got = seen[-1]
    assert got.shape == (400,)
    frac = (got == 3).mean()
    assert abs(frac - 0.5) < 4 * np.sqrt(0.25 / 400)
    with pytest.raises(ValueError, match="cond="):
        step(state, jax.random.key(1), x1, x1)


def test_conditional_step_needs_null_label():
    model = fm.models.MLP(2, (4,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="null_label"):
        images.make_conditional_train_step(model, optimizer=optax.sgd(0.1), path=fm.paths.CondOTPath())


# --- metrics ----------------------------------------------------------------------------


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 2))
    b = rng.normal(size=(20_000, 2)) * [2.0, 1.0] + [1.0, 0.0]
    # mean term 1, cov term (1 + 4 - 2*2) + (1 + 1 - 2) = 1
    assert abs(fm.metrics.frechet_distance(a, b) - 2.0) < 0.1
    assert fm.metrics.frechet_distance(a, a) < 1e-8
    with pytest.raises(ValueError, match="same D"):
        fm.metrics.frechet_distance(a, b[:, :1])


def test_classifier_train_save_load(tmp_path):
    x, y = fm.data.load_digits()
    again = fm.metrics.train_or_load_classifier(tmp_path, jax.random.key(0), x[:1200], y[:1200], steps=100)
    assert fm.metrics.classifier_accuracy(again, x[1200:], y[1200:]) > 0.8
    assert (tmp_path / "classifier.npz").is_file()
    loaded = fm.metrics.train_or_load_classifier(tmp_path, jax.random.key(9), x[:10], y[:10])
    np.testing.assert_allclose(
        fm.metrics.classifier_features(again, x[:50]),
        fm.metrics.classifier_features(loaded, x[:50]),
        rtol=1e-6,
    )


# --- training smoke ---------------------------------------------------------------------


def test_two_step_training_smoke():
    x, y = fm.data.load_digits()
    model = fm.models.UNet(1, channels=4, channel_mult=(1, 2), num_classes=10, num_heads=1, rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    step = images.make_conditional_train_step(
        model,
        optimizer=opt,
        path=fm.paths.CondOTPath(),
        coupling=fm.couplings.ExactOTCoupling(),
        dropout=0.2,
    )
    chunks = []
    state, hist = images.fit_labelled(
        step,
        fm.training.init_state(model, opt),
        jax.random.key(0),
        x[:64],
        y[:64],
        num_steps=2,
        batch_size=16,
        progress=False,
        on_chunk=lambda s, m: chunks.append(int(s.step)),
        unroll=0,  # one rolled scan: half the compile time of the unrolled CPU default
    )
    assert int(state.step) == 2 and chunks == [2]
    assert hist["loss"].shape == (2,) and np.isfinite(hist["loss"]).all()


@pytest.mark.slow
def test_train_images_and_sample(tmp_path):
    cfg = fm.experiments.RunConfig.from_dict({
        "target": "digits", "steps": 20, "batch": 16, "chunk": 10, "ema_decay": 0.99,
        "model": {"channels": 8},
        "eval": {"per_class": 2, "classifier_steps": 20, "num_steps": 2, "every": 10},
    })
    m = fm.experiments.train_and_evaluate(cfg, tmp_path / "run", progress=False)
    assert {"eval", "history", "frechet_real", "best_accuracy"} <= set(m)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 20
    assert (tmp_path / "run" / "samples.png").is_file()
    res = fm.experiments.sample(tmp_path / "run", tmp_path / "out", n=4, label=3, guidance=2.0, ema=True)
    assert res["shape"] == [4, 8, 8, 1] and res["step"] == 20
    assert np.load(tmp_path / "out" / "samples.npy").shape == (4, 8, 8, 1)
    with pytest.raises(ValueError, match="--label must lie in"):
        fm.experiments.sample(tmp_path / "run", tmp_path / "out2", n=4, label=10)
