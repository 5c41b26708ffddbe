"""Discrete flow matching: the mixture path, the losses, the CTMC sampler and the token models.

The reference throughout is a known target on ``L = 2`` tokens with ``V = 8`` (an explicit
joint table ``Q``): for a mixture path with an independent source the exact posterior
``p(x1 | x_t) ∝ Q(x1) prod_i [kappa delta(x_t^i = x1^i) + (1 - kappa) p0(x_t^i)]`` is computable,
so the sampler and the losses can be checked against exact quantities, without training.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm

D = fm.discrete
V = 8
MASK = V  # the mask token of the mask source: vocabulary V + 1
COND_OT = D.MixtureDiscretePath(fm.paths.CondOTSchedule())


def _table(flip: bool = False) -> np.ndarray:
    """A checkerboard of 2x2 blocks on the 8 x 8 grid (32 cells), weights 1..5: a joint law of 2 tokens."""
    a, b = np.meshgrid(np.arange(V), np.arange(V), indexing="ij")
    on = (a // 2 + b // 2) % 2 == (1 if flip else 0)
    w = np.where(on, 1.0 + (a + 2 * b) % 5, 0.0)
    return w / w.sum()


Q = _table()


def _source(kind: str):
    """(vocabulary, p0, x0 maker) of the uniform or the mask source."""
    if kind == "uniform":
        return V, jnp.full(V, 1.0 / V), lambda n: D.uniform_source(jax.random.key(1), (n, 2), V)
    return V + 1, jax.nn.one_hot(MASK, V + 1), lambda n: D.mask_source((n, 2), MASK)


def _padded(tables, vocab):
    """The tables on the model's vocabulary (mask row and column 0), with 1e-9 on empty data cells.

    Euler moves both tokens at once, so a chain can reach a pair of zero target mass; a model
    returns some posterior there, and with this floor the exact posterior is defined there too
    (for the mask source it would be 0 / 0). The floor moves the target by 1e-8 in TV.
    """
    t = np.zeros((len(tables), vocab, vocab))
    for i, q in enumerate(tables):
        t[i, :V, :V] = q + 1e-9
    return jnp.asarray(t / t.sum((1, 2), keepdims=True), jnp.float32)


def exact_posterior(tables, path, p0):
    """logits_fn(x, t, cond=c) of the exact posterior of target tables[c] (c = 0 without cond).

    With l_i(v) = kappa [v = x_t^i] + (1 - kappa) p0(x_t^i) the likelihood of x_t^i given x1^i = v,
    the marginal posterior of token 0 is proportional to l_0(v) sum_w Q(v, w) l_1(w), and
    sum_w Q(v, w) l_1(w) = kappa Q(v, x_t^1) + (1 - kappa) p0(x_t^1) sum_w Q(v, w): O(B V) work.
    """
    vocab = p0.shape[0]
    qq = _padded(tables, vocab)

    def logits_fn(x, t, cond=None):
        c = jnp.zeros(x.shape[0], jnp.int32) if cond is None else cond
        k = path.kappa(t)[0][:, None]
        a, b = x[:, 0], x[:, 1]
        lik_a = k * jax.nn.one_hot(a, vocab) + (1.0 - k) * p0[a][:, None]
        lik_b = k * jax.nn.one_hot(b, vocab) + (1.0 - k) * p0[b][:, None]
        m_a = lik_a * (k * qq[c, :, b] + (1.0 - k) * p0[b][:, None] * qq[c].sum(2))
        m_b = lik_b * (k * qq[c, a, :] + (1.0 - k) * p0[a][:, None] * qq[c].sum(1))
        m = jnp.stack([m_a, m_b], axis=1)
        return jnp.log(m / m.sum(-1, keepdims=True))

    return logits_fn


def tv(x, q) -> float:
    x = np.asarray(x)
    size = max(int(x.max()) + 1, q.shape[0])
    counts = np.zeros((size, size))
    np.add.at(counts, (x[:, 0], x[:, 1]), 1.0)
    ref = np.zeros((size, size))
    ref[: q.shape[0], : q.shape[1]] = q
    return 0.5 * float(np.abs(counts / len(x) - ref).sum())


# --- the path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sched",
    [fm.paths.CondOTSchedule(), fm.paths.PolynomialSchedule(2.0), fm.paths.CosineSchedule()],
    ids=["condot", "poly2", "cosine"],
)
@pytest.mark.parametrize("source", ["uniform", "mask"])
def test_marginal_at_t_is_the_mixture(sched, source):
    # x_t given x1 and an independent source token: kappa delta_x1 + (1 - kappa) p0, counted
    path = D.MixtureDiscretePath(sched)
    vocab, p0, make_x0 = _source(source)
    n, length = 4000, 8
    x1 = jnp.broadcast_to(jnp.arange(length) % V, (n, length)).astype(jnp.int32)
    t = jnp.where(jnp.arange(n) < n // 2, 0.3, 0.8).astype(jnp.float32)
    x0 = make_x0(n * length // 2).reshape(n, length)
    x_t = np.asarray(path.sample(jax.random.key(7), x0, x1, t))
    probs = np.asarray(path.conditional_probs(x1, t, p0))  # the formula, per token
    for half in (slice(0, n // 2), slice(n // 2, n)):
        onehot = np.eye(vocab)[x_t[half]]  # (n/2, L, V)
        freq = onehot.mean(axis=0)
        expect = probs[half].mean(axis=0)
        count = onehot.shape[0]
        se = np.sqrt(expect * (1 - expect) / count)
        assert np.all(np.abs(freq - expect) <= 4.5 * se + 1e-12), np.max(np.abs(freq - expect) / (se + 1e-12))
    kappa = np.asarray(path.kappa(t)[0])
    np.testing.assert_allclose(probs[:, 0, 0], kappa + (1 - kappa) * np.asarray(p0)[0], rtol=1e-6)


def test_path_ends_dtype_and_jit():
    x0 = D.uniform_source(jax.random.key(0), (6, 5), V)
    x1 = (x0 + 1) % V
    key = jax.random.key(3)
    t = jnp.linspace(0, 1, 6)
    eager = COND_OT.sample(key, x0, x1, t)
    assert eager.dtype == x1.dtype and eager.shape == x1.shape
    jitted = jax.jit(COND_OT.sample)
    assert (jitted(key, x0, x1, t) == eager).all()
    assert (jitted(key, x0, x1, jnp.zeros(6)) == x0).all()
    assert (jitted(key, x0, x1, jnp.ones(6)) == x1).all()


def test_schedule_leaf_change_does_not_retrace():
    traces = []

    @jax.jit
    def f(path, key, x0, x1, t):
        traces.append(1)
        return path.sample(key, x0, x1, t)

    x0 = jnp.zeros((2, 3), jnp.int32)
    for n in (1.0, 2.0, 3.0):
        f(
            D.MixtureDiscretePath(fm.paths.PolynomialSchedule(n)),
            jax.random.key(0),
            x0,
            x0 + 1,
            jnp.full(2, 0.5),
        )
    assert len(traces) == 1


def test_velocity_rows_are_rates():
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3, V)), jnp.float32)
    x_t = D.uniform_source(jax.random.key(1), (4, 3), V)
    u = np.asarray(jax.jit(COND_OT.posterior_to_velocity)(logits, x_t, jnp.full(4, 0.25)))
    np.testing.assert_allclose(u.sum(-1), 0.0, atol=1e-6)
    off = u * (1 - np.eye(V)[np.asarray(x_t)])
    assert (off >= 0).all()
    # dkappa / (1 - kappa) = 1 / 0.75 for kappa = t
    p = np.exp(np.asarray(logits))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(off, p / 0.75 * (1 - np.eye(V)[np.asarray(x_t)]), rtol=1e-5)


# --- the losses -------------------------------------------------------------------------------


def _enumerated(path, p0, times):
    """Every (x1 in the support, x_t, t) of positive probability, its weight, the exact posterior logits."""
    vocab = p0.shape[0]
    support = np.argwhere(Q > 0)
    grid = np.stack(np.meshgrid(np.arange(vocab), np.arange(vocab), indexing="ij"), -1).reshape(-1, 2)
    x1 = np.tile(np.repeat(support, len(grid), axis=0), (len(times), 1))
    x_t = np.tile(grid, (len(support) * len(times), 1))
    times = np.asarray(times, np.float32)
    t = np.repeat(times, len(support) * len(grid))
    kappa = np.asarray(path.kappa(jnp.asarray(times))[0])[np.searchsorted(times, t)]
    p0n = np.asarray(p0)
    lik = (kappa[:, None] * (x_t == x1) + (1 - kappa[:, None]) * p0n[x_t]).prod(-1)  # p_t(x_t | x1)
    weight = Q[x1[:, 0], x1[:, 1]] * lik / len(times)
    keep = weight > 0  # x_t impossible under the mask source: dropped
    x1, x_t, t, weight = (
        jnp.asarray(a[keep]) for a in (x1.astype(np.int32), x_t.astype(np.int32), t, weight)
    )
    logits = jax.jit(exact_posterior([Q], path, p0))(x_t, t)
    return logits, x1, x_t, t, weight


@pytest.mark.parametrize("source", ["uniform", "mask"])
def test_loss_is_minimised_by_the_exact_posterior(source):
    # both losses, in expectation over x1 ~ Q, x_t ~ p_t(. | x1), t ~ U{0.2, 0.5, 0.8} (enumerated,
    # not sampled), are smallest at the exact posterior among perturbations of it
    path = D.MixtureDiscretePath(fm.paths.PolynomialSchedule(1.5))
    times = (0.2, 0.5, 0.8)
    _, p0, _ = _source(source)
    logits, x1, x_t, t, weight = _enumerated(path, p0, times)

    def per_row(lg, kind):
        one = lambda lg, a, b, s: D.mixture_kl_loss(lg[None], a[None], b[None], s[None], path=path, kind=kind)
        return jax.vmap(one)(lg, x1, x_t, t)

    @jax.jit
    def expected(batch):  # (K, rows, 2, V) logits -> (2, K): generalized KL, cross-entropy
        one = lambda lg, kind: jnp.sum(weight * per_row(lg, kind))
        return jnp.stack([jax.vmap(functools.partial(one, kind=k))(batch) for k in D.LOSS_KINDS])

    vocab = p0.shape[0]
    # a perturbation is a function of (x_t, t) only: rows with the same x_t and t share it
    cell = (
        np.searchsorted(np.float32(times), np.asarray(t)) * vocab + np.asarray(x_t[:, 0])
    ) * vocab + np.asarray(x_t[:, 1])
    rng = np.random.default_rng(0)
    finite = jnp.isfinite(logits)  # the mask column stays -inf
    batch = [logits, jnp.where(finite, 0.0, logits)]  # the exact posterior, a uniform guess
    for eps in (0.02, 0.1, 0.5):
        for _ in range(3):
            noise = rng.standard_normal((3 * vocab * vocab, 2, vocab)).astype(np.float32)[cell]
            batch.append(jnp.where(finite, logits + eps * noise, logits))
    values = np.asarray(expected(jnp.stack(batch)))
    assert np.isfinite(values).all()
    best, others = values[:, :1], values[:, 1:]
    assert (others > best).all(), values
    assert (values[:, 1] > values[:, 0] + 1e-3).all()
    assert values[0, 0] >= -1e-6  # the generalized KL is a divergence: >= 0


@jax.jit
def _both_losses(logits, x1, x_t, t):
    return [D.mixture_kl_loss(logits, x1, x_t, t, path=COND_OT, kind=k) for k in D.LOSS_KINDS]


def test_loss_equals_the_per_token_formula():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, 4, V)).astype(np.float32)
    a = rng.integers(0, V, (3, 4))
    b = np.where(np.arange(4) % 2 == 0, a, (a + 3) % V)
    t = np.array([0.1, 0.5, 0.9], np.float32)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    lam = 1.0 / (1.0 - t)[:, None]
    p_x1 = np.take_along_axis(p, a[..., None], -1)[..., 0]
    p_xt = np.take_along_axis(p, b[..., None], -1)[..., 0]
    same = a == b
    ref = -lam * (p_xt - same + np.where(same, 0.0, np.log(p_x1)))
    got, ce = _both_losses(
        jnp.asarray(logits), jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32), jnp.asarray(t)
    )
    np.testing.assert_allclose(float(got), ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(ce), -np.log(p_x1).mean(), rtol=1e-5)
    assert got.shape == () and got.dtype == jnp.float32


# --- the sampler ------------------------------------------------------------------------------

N_SAMPLES = 40_000


@pytest.mark.parametrize("source", ["uniform", "mask"])
def test_ctmc_euler_with_the_exact_posterior_reproduces_the_target(source):
    # TV of 40 000 samples: 40 000 iid draws from Q itself are at TV 0.015 (the sampling noise);
    # with 100 Euler steps this sampler measured 0.015 (uniform) and 0.016 (mask). One step (the
    # product of the two marginal posteriors) is at 0.51, ten steps at 0.08 / 0.05.
    vocab, p0, make_x0 = _source(source)
    fn = exact_posterior([Q], COND_OT, p0)
    run = jax.jit(lambda key, x0: D.sample(fn, key, x0, path=COND_OT, num_steps=100))
    x = run(jax.random.key(2), make_x0(N_SAMPLES))
    assert x.dtype == jnp.int32 and x.shape == (N_SAMPLES, 2)
    assert int(x.max()) < V  # the mask never survives
    assert tv(x, Q) < 0.03
    one = D.sample(fn, jax.random.key(2), make_x0(N_SAMPLES), path=COND_OT, num_steps=1)
    assert tv(one, Q) > 0.2 if source == "uniform" else tv(one, Q) > 0.1


def test_corrector_keeps_the_target_cosine_schedule():
    path = D.MixtureDiscretePath(fm.paths.CosineSchedule())
    vocab, p0, make_x0 = _source("mask")
    fn = exact_posterior([Q], path, p0)
    x = jax.jit(
        lambda key, x0: D.sample(
            fn, key, x0, path=path, num_steps=100, corrector=lambda t: 5.0 * t * (1.0 - t), source_probs=p0
        )
    )(jax.random.key(3), make_x0(N_SAMPLES))
    assert tv(x, Q) < 0.03


def test_guidance_one_is_conditional_zero_is_unconditional():
    vocab, p0, make_x0 = _source("uniform")
    tables = [_table(False), _table(True), 0.5 * (_table(False) + _table(True))]  # class 0, 1, null = 2
    fn = exact_posterior(tables, COND_OT, p0)
    n = 2000
    x0 = make_x0(n)
    labels = (jnp.arange(n) % 2).astype(jnp.int32)
    key = jax.random.key(5)
    plain = jax.jit(lambda c: D.sample(fn, key, x0, path=COND_OT, num_steps=20, cond=c))
    guided = jax.jit(
        lambda w: D.sample(
            fn, key, x0, path=COND_OT, num_steps=20, cond=labels, guidance_scale=w, null_cond=2
        )
    )
    conditional, unconditional = plain(labels), plain(jnp.full(n, 2, jnp.int32))
    assert (guided(1.0) == conditional).all()
    assert (guided(0.0) == unconditional).all()
    # w > 1 sharpens towards the class: no fewer samples on the class's own checkerboard
    on = lambda x: np.mean(np.stack(tables)[np.asarray(labels), np.asarray(x[:, 0]), np.asarray(x[:, 1])] > 0)
    w3 = guided(3.0)
    assert int(w3.min()) >= 0 and int(w3.max()) < V
    assert on(w3) >= on(conditional) - 0.01


def test_jit_equals_eager_and_fixed_key_is_deterministic():
    vocab, p0, make_x0 = _source("mask")
    fn = exact_posterior([Q], COND_OT, p0)
    x0 = make_x0(256)
    kw = dict(path=COND_OT, num_steps=12, corrector=0.5, source_probs=p0, temperature=0.9, t0=0.1, t1=1.0)
    eager = D.sample(fn, jax.random.key(8), x0, **kw)
    jitted = jax.jit(lambda key: D.sample(fn, key, x0, **kw))
    assert (jitted(jax.random.key(8)) == eager).all()
    assert (jitted(jax.random.key(8)) == eager).all()
    assert not (jitted(jax.random.key(9)) == eager).all()
    assert int(eager.max()) < V
    # stopping before t = 1 leaves some masks
    early = D.sample(fn, jax.random.key(8), x0, path=COND_OT, num_steps=5, t1=0.3)
    assert (early == MASK).any() and (early != MASK).any()


# --- the token models ---------------------------------------------------------------------------


def test_token_transformer_trains_and_samples_under_jit():
    vocab, p0, make_x0 = _source("mask")
    model = fm.models.TokenTransformer(
        vocab,
        2,
        dim=16,
        depth=1,
        heads=2,
        num_classes=2,
        mask_token=MASK,
        time_frequencies=4,
        rngs=nnx.Rngs(0),
    )
    graphdef, params = nnx.split(model)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    # one fixed batch from the target (its class: the parity of the cell), on the path at random t
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    idx = jax.random.choice(k1, V * V, (256,), p=jnp.asarray(Q.ravel()))
    x1 = jnp.stack([idx // V, idx % V], -1).astype(jnp.int32)
    t = jax.random.uniform(k2, (256,), maxval=0.99)
    x_t = COND_OT.sample(k3, make_x0(256), x1, t)
    labels = (idx % 2).astype(jnp.int32)

    def loss_fn(params):
        logits = nnx.merge(graphdef, params)(x_t, t, cond=labels)
        return D.mixture_kl_loss(logits, x1, x_t, t, path=COND_OT)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(25):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses

    model = nnx.merge(graphdef, params)
    run = jax.jit(
        lambda key, x0: D.sample(
            model, key, x0, path=COND_OT, num_steps=3, cond=labels[:4], guidance_scale=2.0
        )
    )  # null class from model.null_cond
    x = run(jax.random.key(0), make_x0(4))
    assert x.shape == (4, 2) and int(x.max()) < V  # mask_token is never predicted


def test_token_mlp_shapes_null_class_and_traced_bad_tokens_are_nan():
    model = fm.models.TokenMLP(
        V + 1, 2, hidden=(16,), num_classes=3, mask_token=MASK, time_frequencies=4, rngs=nnx.Rngs(0)
    )
    tr = fm.models.TokenTransformer(
        V + 1,
        2,
        dim=16,
        depth=1,
        heads=2,
        num_classes=2,
        mask_token=MASK,
        time_frequencies=4,
        rngs=nnx.Rngs(1),
    )  # the shapes of the test above
    x = jnp.array([[0, 8], [3, 4]])
    bad = jnp.array([[0, 9], [-1, 4]])
    t = jnp.array([0.2, 0.7])

    @jax.jit
    def outputs(x, bad):
        return (
            model(x, t, cond=jnp.array([0, 3])),
            model(x, t),
            model(x, t, cond=model.null_cond(2)),
            model(bad, t),
            tr(jnp.array([[0, 1], [-1, 4]]), t),
        )

    out, null_a, null_b, nan_mlp, nan_tr = outputs(x, bad)
    assert out.shape == (2, 2, V + 1) and bool((out[..., MASK] < -1e8).all())
    np.testing.assert_allclose(null_a, null_b)
    assert not np.allclose(out[0], null_a[0])  # label 0 is not the null class
    assert bool(jnp.isnan(nan_mlp).all())  # 9 and -1 are out of range: NaN, not a wrapped row
    assert bool(jnp.isnan(nan_tr[1]).all()) and not bool(jnp.isnan(nan_tr[0]).any())
