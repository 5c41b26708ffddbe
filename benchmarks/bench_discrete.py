"""Discrete flow matching on token tasks with known laws: TV and exact likelihood against steps.

Run (one core, one thread; the defaults took 8 + 10 minutes on the shared 2-core machine):

    .venv/bin/python -m benchmarks.bench_discrete [--quick] [--seeds 0 1 2] [--steps N]
        [--seq-steps N] [--parts grid markov] [--sources uniform mask] [--seq-sources mask]
        [--corrector C]

Both tasks train through the shared layer (``fm.training.make_train_step`` with
``fm.discrete.DiscreteObjective(kind)`` for each of ``--kinds``, cross-entropy by default: the
generalized KL trained far slower here; ``fm.training.fit``, Adam ``--lr`` cosine-decayed to 5%,
fresh data every step) on the mixture path ``MixtureDiscretePath(CondOTSchedule())``
(``kappa_t = t``), from a uniform source (``fm.discrete.uniform_source``) or a mask source
(``mask_source``; the model's vocabulary gains the mask token), and generate with
``fm.discrete.sample`` (CTMC Euler, the last step drawn from the posterior) at 1, 2, 4, ..., 128
steps (the grid task also with the divergence-free corrector ``c_t = C t (1 - t)``,
``--corrector``).
Every sampling-step count also runs with the *exact* posterior of the known target (the
"exact posterior" rows): the discretisation error alone, with no model error.

(a) ``grid``: ``checkerboard`` quantised to a 64 x 64 grid (``grid_tokens``, L = 2, V = 64),
``fm.models.TokenMLP`` (``--hidden``, 2 x 256 SiLU; ``--steps`` 6000 of batch ``--batch`` 512).
Score: the total variation between the law of the generated tokens and the exact table
(``grid_token_probs``). L = 2 makes that law *computable*: with all V^2 states in one batch,
each Euler step's per-token jump probabilities (the sampler's own formula, repeated here) move
the law exactly, so the TV has no sampling noise. A check that this is the law
``fm.discrete.sample`` draws from: for the first seed, ``--samples`` tokens are generated at each
``--sample-at`` step count and their histogram is compared with the table (the usual sampled
score) and with the computed law, next to the TV that as many draws from the law and from the
table show (noise floors: about 0.08 for 50,000 draws on the checkerboard's 2,048 cells, so a
sampled histogram of that size cannot show a TV below 0.05).

(b) ``markov``: digit strings from the fixed Markov chain of ``markov_digits`` (L = 16, V = 10),
``fm.models.TokenTransformer`` (``--dim`` 32, ``--depth`` 2, 4 heads; ``--seq-steps`` 3000 of batch
256; the mask source by default, ``--seq-sources``). Scores on ``--seq-samples``
generated strings: their mean exact log-likelihood under the chain (``markov_log_prob``) against
the chain's exact value (minus its entropy), and the TV between their bigram table (adjacent
pairs pooled over positions) and the chain's exact one, next to the TV of as many true strings.
The exact posterior is the chain's forward-backward posterior given the noisy string.

Writes ``RESULTS/discrete.{jsonl,md,png}`` (``discrete_quick.*`` with ``--quick``); the tables hold
the newest row of every case at the same settings, so ``--parts markov`` reruns one part.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from benchmarks import _harness as h

NAME = "discrete"
GRID_VOCAB = 64
SEQ_LEN, SEQ_VOCAB = 16, 10
STEP_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)
_EPS = 1e-6  # the sampler's clip of 1 - kappa and kappa


# -- shared pieces -------------------------------------------------------------------------------


def _path():
    import flowjax_fm as fm

    return fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())


def _vocab(task: str, source: str) -> tuple[int, int, int | None]:
    """(data vocabulary, model vocabulary, mask token)."""
    v = GRID_VOCAB if task == "grid" else SEQ_VOCAB
    return (v, v, None) if source == "uniform" else (v, v + 1, v)


def _source_sampler(task: str, source: str):
    import flowjax_fm as fm

    v, _, mask = _vocab(task, source)
    length = 2 if task == "grid" else SEQ_LEN
    if source == "uniform":
        return lambda k, n: fm.discrete.uniform_source(k, (n, length), v)
    return lambda k, n: fm.discrete.mask_source((n, length), mask)


def _source_probs(task: str, source: str):
    import jax
    import jax.numpy as jnp

    v, vm, mask = _vocab(task, source)
    return jnp.full((vm,), 1.0 / vm) if source == "uniform" else jax.nn.one_hot(mask, vm)


def _corrector(c: float):
    return None if not c else (lambda t: c * t * (1.0 - t))


def _train(ctx, case, model, target):
    import jax
    import optax

    import flowjax_fm as fm

    a = ctx.args
    steps, batch = (a.steps, a.batch) if case["part"] == "grid" else (a.seq_steps, a.seq_batch)
    opt = optax.adam(optax.cosine_decay_schedule(a.lr, steps, 0.05))
    step = fm.training.make_train_step(model, optimizer=opt, path=_path(),
                                       objective=fm.discrete.DiscreteObjective(kind=case["kind"]))
    state, hist, timing = h.fit_timed(step, fm.training.init_state(model, opt), jax.random.key(case["seed"]),
                                      _source_sampler(case["part"], case["source"]), target, steps=steps,
                                      batch=batch, chunk=min(a.chunk, steps))
    loss = np.asarray(hist["loss"])
    info = {"train_steps": steps, "batch": batch, "lr": a.lr, "train_s": timing.train_s,
            "loss_first": float(loss[: max(len(loss) // 20, 1)].mean()),
            "loss_last": float(loss[-max(len(loss) // 20, 1):].mean())}
    return fm.training.make_vector_field(model, state.params), info


def _euler_probs(p, x, t, h, last, path, corrector, p0):
    """The per-token jump probabilities of one step of ``fm.discrete.sample`` (its formula)."""
    import jax
    import jax.numpy as jnp

    kappa, d_kappa = path.kappa(t)
    rates = d_kappa / jnp.maximum(1.0 - kappa, _EPS) * p
    if corrector is not None:
        c = corrector(t)
        rates = (1.0 + c) * rates + c * d_kappa / jnp.maximum(kappa, _EPS) * p0
    current = jax.nn.one_hot(x, p.shape[-1], dtype=p.dtype)
    rates = jnp.maximum(rates, 0.0) * (1.0 - current)
    total = jnp.sum(rates, axis=-1, keepdims=True)
    jump = jnp.where(h * total > 1.0, 1.0 / jnp.maximum(total, 1e-30), h) * rates
    euler = jump + current * (1.0 - jnp.sum(jump, axis=-1, keepdims=True))
    return jnp.where(last, p / jnp.sum(p, axis=-1, keepdims=True), euler)


# -- (a) the token grid: the exact law of the sampler ---------------------------------------------


def _grid_states(vm: int):
    import jax.numpy as jnp

    a, b = jnp.meshgrid(jnp.arange(vm), jnp.arange(vm), indexing="ij")
    return jnp.stack([a.ravel(), b.ravel()], axis=1).astype(jnp.int32)


def _table(vm: int) -> np.ndarray:
    from flowjax_fm.data._token_toys import grid_token_probs

    out = np.zeros((vm, vm))
    out[:GRID_VOCAB, :GRID_VOCAB] = np.asarray(grid_token_probs("checkerboard", GRID_VOCAB), np.float64)
    return out


def _grid_oracle(source: str):
    """Exact posterior logits of the grid target: p(x1^i | x_t) from the table and the path."""
    import jax
    import jax.numpy as jnp

    path, p0 = _path(), _source_probs("grid", source)
    vm = p0.shape[0]
    q = jnp.asarray(_table(vm), jnp.float32)

    def logits_fn(x, t):
        kappa = path.kappa(t)[0][:, None]
        m1, m2 = (kappa * jax.nn.one_hot(x[:, i], vm) + (1.0 - kappa) * p0[x[:, i]][:, None] for i in (0, 1))
        # m_i[b, c] = p(x_t^i = x[b, i] | x1^i = c) = kappa 1{c = x} + (1 - kappa) p0(x)
        post = jnp.stack([m1 * (m2 @ q.T), m2 * (m1 @ q)], axis=1)  # 0 for unreachable states
        return jnp.log(post / jnp.maximum(jnp.sum(post, axis=-1, keepdims=True), 1e-30) + 1e-30)

    return logits_fn


def grid_law(logits_fn, source: str, num_steps: int, corrector: float) -> np.ndarray:
    """The exact law ``(V', V')`` of ``fm.discrete.sample``'s tokens on the grid task.

    ``law[a, b] <- sum_s law[s] P(s_1 -> a) P(s_2 -> b)``: the two tokens jump independently given
    the state ``s``, with the step's probabilities for every state in one batch.
    """
    return np.asarray(_grid_law_jit(logits_fn, source, corrector)(num_steps), np.float64)


@functools.lru_cache(maxsize=32)
def _grid_law_jit(logits_fn, source, corrector):
    import jax
    import jax.numpy as jnp

    path, p0 = _path(), _source_probs("grid", source)
    vm = p0.shape[0]
    states = _grid_states(vm)
    n_states = vm * vm
    corr = _corrector(corrector)
    law0 = (jnp.full((n_states,), 1.0 / n_states) if source == "uniform"
            else jax.nn.one_hot((vm - 1) * vm + vm - 1, n_states))

    @jax.jit
    def run(num_steps):
        h = 1.0 / num_steps

        def body(i, law):
            t = i * h
            p = jax.nn.softmax(logits_fn(states, jnp.full((n_states,), t, jnp.float32)), axis=-1)
            probs = _euler_probs(p, states, t, h, i == num_steps - 1, path, corr, p0)
            return ((law[:, None] * probs[:, 0, :]).T @ probs[:, 1, :]).ravel()

        return jax.lax.fori_loop(0, num_steps, body, law0).reshape(vm, vm)

    return run


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).sum())


def _histogram(x, vm: int) -> np.ndarray:
    x = np.asarray(x)
    return np.bincount(x[:, 0] * vm + x[:, 1], minlength=vm * vm).reshape(vm, vm) / len(x)


def _draw_tv(law: np.ndarray, n: int, seed: int) -> float:
    """TV between ``law`` and the histogram of ``n`` draws from it (its noise floor at ``n``)."""
    counts = np.random.default_rng(seed).multinomial(n, law.ravel() / law.sum())
    return _tv(counts.reshape(law.shape) / n, law)


def grid_floor(ctx) -> float:
    """TV of ``--samples`` exact draws (``grid_tokens``) against the table, mean of 3 keys."""
    import jax

    from flowjax_fm.data._token_toys import grid_tokens

    if "grid_floor" not in ctx.data:
        n, table = ctx.args.samples, _table(GRID_VOCAB)
        ctx.data["grid_floor"] = float(np.mean([
            _tv(_histogram(grid_tokens(jax.random.key(900 + r), n, vocab=GRID_VOCAB), GRID_VOCAB), table)
            for r in range(3)]))
    return ctx.data["grid_floor"]


def run_grid(ctx, case) -> list[dict]:
    import jax
    from flax import nnx

    import flowjax_fm as fm
    from flowjax_fm.data._token_toys import grid_tokens

    a = ctx.args
    _, vm, mask = _vocab("grid", case["source"])
    info: dict = {}
    if case["model"] == "oracle":
        logits_fn = _grid_oracle(case["source"])
    else:
        model = fm.models.TokenMLP(vm, 2, hidden=tuple(a.hidden), mask_token=mask, rngs=nnx.Rngs(case["seed"]))
        logits_fn, info = _train(ctx, case, model, lambda k, n: grid_tokens(k, n, vocab=GRID_VOCAB))
    table, rows = _table(vm), []
    for corrector in sorted({0.0, a.corrector}):
        for n in a.sampling_steps:
            start = time.perf_counter()
            law = grid_law(logits_fn, case["source"], n, corrector)
            row = {**case, **info, "num_steps": n, "corrector": corrector, "tv": _tv(law, table),
                   "off_support": float(law[table == 0].sum()), "law_s": time.perf_counter() - start}
            if n in a.sample_at and case["seed"] == a.seeds[0]:  # the sampler itself, for the first seed
                x0 = _source_sampler("grid", case["source"])(jax.random.key(10_000 + n), a.samples)
                start = time.perf_counter()
                x = fm.discrete.sample(logits_fn, jax.random.key(20_000 + n), x0, path=_path(), num_steps=n,
                                       corrector=_corrector(corrector),
                                       source_probs=_source_probs("grid", case["source"]) if corrector else None)
                hist = _histogram(x, vm)
                row.update({"samples": a.samples, "sample_s": time.perf_counter() - start,
                            "tv_sampled": _tv(hist, table), "tv_sampled_vs_law": _tv(hist, law),
                            "law_floor": _draw_tv(law, a.samples, n), "table_floor": grid_floor(ctx)})
            rows.append(row)
    return rows


# -- (b) Markov digit strings ---------------------------------------------------------------------


def _markov_oracle(source: str):
    """Exact posterior logits of the Markov strings: forward-backward given the noisy string."""
    import jax
    import jax.numpy as jnp

    from flowjax_fm.data._token_toys import markov_chain

    path, p0 = _path(), _source_probs("markov", source)
    vm = p0.shape[0]
    init, trans = markov_chain(SEQ_VOCAB)

    def one(x, t):  # x (L,), t ()
        kappa = path.kappa(t)[0]
        # emission e[i, c] = p(x_t^i | x1^i = c), c over the data digits
        emit = kappa * jax.nn.one_hot(x, SEQ_VOCAB) + (1.0 - kappa) * p0[x][:, None]

        def normalise(v):  # all zero only for strings the path cannot reach
            return v / jnp.maximum(jnp.sum(v, axis=-1, keepdims=True), 1e-30)

        def forward(a, e):
            a = normalise((a @ trans) * e)
            return a, a

        def backward(b, e):
            b = normalise(trans @ (e * b))
            return b, b

        first = normalise(init * emit[0])
        _, fwd = jax.lax.scan(forward, first, emit[1:])
        _, bwd = jax.lax.scan(backward, jnp.ones(SEQ_VOCAB), emit[1:], reverse=True)
        fwd = jnp.concatenate([first[None], fwd])
        bwd = jnp.concatenate([bwd, jnp.ones((1, SEQ_VOCAB))])
        post = normalise(fwd * bwd)
        return jnp.log(jnp.pad(post, ((0, 0), (0, vm - SEQ_VOCAB))) + 1e-30)

    return lambda x, t: jax.vmap(one)(x, t)


def _bigrams(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    counts = np.zeros((SEQ_VOCAB, SEQ_VOCAB))
    np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    return counts / counts.sum()


def markov_reference() -> dict:
    """The chain's exact numbers: minus its entropy (the mean log-likelihood of true strings) and
    the bigram table pooled over positions."""
    from flowjax_fm.data._token_toys import markov_chain

    init, trans = (np.asarray(v, np.float64) for v in markov_chain(SEQ_VOCAB))
    marg, bigram, mean = init.copy(), np.zeros_like(trans), float(init @ np.log(init))
    for _ in range(SEQ_LEN - 1):
        bigram += marg[:, None] * trans
        mean += float(marg @ np.sum(trans * np.log(trans), axis=1))
        marg = marg @ trans
    return {"neg_entropy": mean, "bigram": bigram / (SEQ_LEN - 1)}


def markov_floor(ctx) -> dict:
    """True strings scored like generated ones: ``--seq-samples`` strings, 3 keys."""
    import jax

    from flowjax_fm.data._token_toys import markov_digits, markov_log_prob

    if "markov_floor" not in ctx.data:
        ref, n = markov_reference(), ctx.args.seq_samples
        ll, tv, sd = [], [], []
        for r in range(3):
            x = markov_digits(jax.random.key(950 + r), n, length=SEQ_LEN, vocab=SEQ_VOCAB)
            lp = np.asarray(markov_log_prob(x, vocab=SEQ_VOCAB))
            ll.append(lp.mean())
            sd.append(lp.std())
            tv.append(_tv(_bigrams(x), ref["bigram"]))
        ctx.data["markov_floor"] = {"loglik_true": float(np.mean(ll)), "bigram_floor": float(np.mean(tv)),
                                    "loglik_se": float(np.mean(sd)) / np.sqrt(n)}
    return ctx.data["markov_floor"]


def run_markov(ctx, case) -> list[dict]:
    import jax
    from flax import nnx

    import flowjax_fm as fm
    from flowjax_fm.data._token_toys import markov_digits, markov_log_prob

    a = ctx.args
    _, vm, mask = _vocab("markov", case["source"])
    info: dict = {}
    if case["model"] == "oracle":
        logits_fn = _markov_oracle(case["source"])
    else:
        model = fm.models.TokenTransformer(vm, SEQ_LEN, dim=a.dim, depth=a.depth, heads=4, mask_token=mask,
                                           rngs=nnx.Rngs(case["seed"]))
        logits_fn, info = _train(ctx, case, model,
                                 lambda k, n: markov_digits(k, n, length=SEQ_LEN, vocab=SEQ_VOCAB))
    ref, floor, rows = markov_reference(), markov_floor(ctx), []
    x0 = _source_sampler("markov", case["source"])(jax.random.key(30_000), a.seq_samples)
    run = jax.jit(lambda k, n: fm.discrete.sample(logits_fn, k, x0, path=_path(), num_steps=n), static_argnums=1)
    for n in a.sampling_steps:
        start = time.perf_counter()
        x = np.asarray(run(jax.random.key(40_000 + n), n))
        lp = np.asarray(markov_log_prob(x, vocab=SEQ_VOCAB))
        rows.append({**case, **info, "num_steps": n, "corrector": 0.0, "samples": a.seq_samples,
                     "loglik": float(lp.mean()), "loglik_sd": float(lp.std()), "neg_entropy": ref["neg_entropy"],
                     **floor, "bigram_tv": _tv(_bigrams(x), ref["bigram"]), "sample_s": time.perf_counter() - start})
    return rows


# -- the suite -----------------------------------------------------------------------------------


def cases(ctx):
    a = ctx.args
    for part in a.parts:
        for source in a.sources if part == "grid" else a.seq_sources:
            yield {"part": part, "source": source, "model": "oracle", "kind": None, "seed": None}
            for kind in a.kinds:
                for seed in a.seeds:
                    yield {"part": part, "source": source, "model": "grid MLP" if part == "grid" else
                           "transformer", "kind": kind, "seed": seed}


def run_case(ctx, case) -> list[dict]:
    rows = (run_grid if case["part"] == "grid" else run_markov)(ctx, case)
    a = ctx.args
    arch = (f"TokenMLP {'x'.join(map(str, a.hidden))}" if case["part"] == "grid"
            else f"TokenTransformer dim {a.dim} depth {a.depth}")
    return [{"suite": NAME, "command": ctx.command, "arch": None if case["model"] == "oracle" else arch,
             **r} for r in rows]


def flags(ap) -> None:
    ap.add_argument("--parts", nargs="*", default=["grid", "markov"], choices=["grid", "markov"])
    ap.add_argument("--sources", nargs="*", default=["uniform", "mask"], choices=["uniform", "mask"],
                    help="sources of the grid task")
    ap.add_argument("--seq-sources", nargs="*", default=["mask"], choices=["uniform", "mask"],
                    help="sources of the sequence task")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--kinds", nargs="*", default=["cross_entropy"], choices=["cross_entropy", "generalized_kl"],
                    help="DiscreteObjective kinds to train with")
    ap.add_argument("--steps", type=int, default=6000, help="training steps of the grid model")
    ap.add_argument("--seq-steps", type=int, default=3000, help="training steps of the sequence model")
    ap.add_argument("--batch", type=int, default=512, help="batch of the grid model")
    ap.add_argument("--seq-batch", type=int, default=256, help="batch of the sequence model")
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam's peak step (cosine decay to 5%%)")
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--hidden", type=int, nargs="*", default=[256, 256], help="TokenMLP widths")
    ap.add_argument("--dim", type=int, default=32, help="TokenTransformer width")
    ap.add_argument("--depth", type=int, default=2, help="TokenTransformer blocks")
    ap.add_argument("--corrector", type=float, default=3.0,
                    help="C of the grid task's corrector c_t = C t (1 - t) (0: none)")
    ap.add_argument("--sampling-steps", type=int, nargs="*", default=list(STEP_COUNTS))
    ap.add_argument("--samples", type=int, default=50_000, help="generated grid tokens per checked step count")
    ap.add_argument("--sample-at", type=int, nargs="*", default=[16],
                    help="grid step counts also sampled with fm.discrete.sample (first seed)")
    ap.add_argument("--seq-samples", type=int, default=2000, help="generated strings per step count")


def _settings(ctx, r) -> bool:
    a = ctx.args
    if r.get("model") == "oracle":
        return True
    if r["part"] == "grid":
        return r.get("train_steps") == a.steps and r.get("arch") == f"TokenMLP {'x'.join(map(str, a.hidden))}"
    return r.get("train_steps") == a.seq_steps and r.get("arch") == f"TokenTransformer dim {a.dim} depth {a.depth}"


def history(ctx, rows):
    """The newest row of every (part, source, model, kind, seed, steps, corrector) at these settings."""
    keep = (r for r in rows if r.get("suite") == NAME and _settings(ctx, r))
    return h.latest(keep, lambda r: (r["part"], r["source"], r["model"], r["kind"], r["seed"], r["num_steps"],
                                     r["corrector"]))


def _label(r) -> str:
    return "exact posterior" if r["model"] == "oracle" else f"{r['arch']}, {r['kind']}"


def _groups(rows, part):
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["part"] == part:
            out.setdefault((r["source"], _label(r), r["corrector"]), []).append(r)
    return out


def table_rows(ctx, rows):
    out = []
    for (source, label, corrector), rs in _groups(rows, "grid").items():
        best = min(STEP_COUNTS, key=lambda n: h.mean_of([r for r in rs if r["num_steps"] == n], "tv") or 9.0)
        out.append({"source": source, "label": label, "corrector": corrector, "rows": rs, "best": best})
    return out


def _tv_cell(n):
    def cell(t):
        rs = [r for r in t["rows"] if r["num_steps"] == n]
        return h.mean_sd((r["tv"] for r in rs), ".3f") if rs else "-"
    return (f"{n}", cell)


COLUMNS = [
    ("source", lambda t: t["source"]), ("posterior", lambda t: t["label"]),
    ("corrector C", lambda t: f"{t['corrector']:g}"),
    ("seeds", lambda t: len({r["seed"] for r in t["rows"]})),
    *[_tv_cell(n) for n in STEP_COUNTS],
]


def preamble(ctx, rows) -> str:
    g = [r for r in rows if r["part"] == "grid" and r["model"] != "oracle"]
    train = (f"{g[0]['arch']} trained {g[0]['train_steps']} steps (batch {g[0]['batch']}, Adam {g[0]['lr']:g} "
             f"cosine-decayed, {h.mean_of(g, 'train_s'):.0f} s each)" if g else "no trained model")
    return (f"{h.env_line(ctx.env, ctx.threads)}. (a) Checkerboard on a {GRID_VOCAB} x {GRID_VOCAB} token grid "
            "(L = 2): total variation between the exact law of `fm.discrete.sample`'s tokens and the exact "
            f"table, mean +- sd over seeds, against the number of CTMC Euler steps (columns); {train}. "
            "Corrector: c_t = C t (1 - t). The exact-posterior rows are the sampler's discretisation error "
            "alone. Rows: the newest of each case in "
            f"{ctx.name}.jsonl, from {' and '.join(sorted({r.get('command', '(not recorded)') for r in rows}))}.")


def extra_md(ctx, rows) -> str:
    parts = []
    sampled = [r for r in rows if r["part"] == "grid" and r.get("tv_sampled") is not None]
    if sampled:
        parts.append(
            f"\n## (a) The sampler itself: {sampled[0]['samples']:,} generated tokens (first seed)\n\n"
            "TV of the histogram of `fm.discrete.sample`'s tokens against the table and against the computed "
            "law, next to the TV of as many draws from that law (its floor) and of as many exact draws "
            "(`grid_tokens`) against the table (the floor of the sampled TV).\n\n" + h.markdown_table(
                ["source", "posterior", "C", "steps", "TV law", "TV sampled", "floor (exact draws)",
                 "sampled vs law", "floor (law draws)", "sample s"],
                [[r["source"], _label(r), f"{r['corrector']:g}", r["num_steps"], f"{r['tv']:.4f}",
                  f"{r['tv_sampled']:.4f}", f"{r['table_floor']:.4f}", f"{r['tv_sampled_vs_law']:.4f}",
                  f"{r['law_floor']:.4f}", f"{r['sample_s']:.1f}"] for r in sampled]) + "\n")
    mk = _groups(rows, "markov")
    if mk:
        any_row = next(iter(mk.values()))[0]
        cells = []
        for (source, label, corrector), rs in mk.items():
            for n in STEP_COUNTS:
                at = [r for r in rs if r["num_steps"] == n]
                if at:
                    cells.append([source, label, f"{corrector:g}", n, len(at),
                                  h.mean_sd((r["loglik"] for r in at), ".2f"),
                                  h.mean_sd((r["loglik"] - r["neg_entropy"] for r in at), ".2f"),
                                  h.mean_sd((r["bigram_tv"] for r in at), ".4f")])
        tr = [r for rs in mk.values() for r in rs if r["model"] != "oracle"]
        train = (f"{tr[0]['arch']}, 4 heads, trained {tr[0]['train_steps']} steps (batch {tr[0]['batch']}, "
                 f"{h.mean_of(tr, 'train_s'):.0f} s each)" if tr else "no trained model")
        parts.append(
            f"\n## (b) Markov digit strings (L = {SEQ_LEN}, V = {SEQ_VOCAB})\n\n"
            f"{train}. {any_row['samples']:,} generated strings per step count. Mean exact log-likelihood "
            f"under the chain (nats); the chain's exact value is {any_row['neg_entropy']:.2f} (minus its "
            f"entropy) and {any_row['samples']:,} true strings score {any_row['loglik_true']:.2f} "
            f"(standard error {any_row['loglik_se']:.2f}). Bigram TV: adjacent pairs pooled over positions "
            f"against the chain's exact table; {any_row['samples']:,} true strings give "
            f"{any_row['bigram_floor']:.4f}.\n\n" + h.markdown_table(
                ["source", "posterior", "C", "steps", "seeds", "log-lik", "log-lik - exact", "bigram TV"], cells))
    return "".join(parts)


def plot(ctx, rows) -> None:
    """``NAME.png``: grid TV against steps (one panel per source), then the Markov log-likelihood gap."""
    panels = [("grid", src) for src in ctx.args.sources] + [("markov", src) for src in ctx.args.seq_sources]
    panels = [(part, src) for part, src in panels if any(r["part"] == part and r["source"] == src for r in rows)]
    if not panels:
        return
    plt = h._pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (part, source) in zip(axes[0], panels, strict=True):
        for (src, label, corrector), rs in _groups(rows, part).items():
            if src != source:
                continue
            steps = sorted({r["num_steps"] for r in rs})
            at = [[r for r in rs if r["num_steps"] == n] for n in steps]
            if part == "grid":
                y = [h.mean_of(a, "tv") for a in at]
            else:
                y = [abs(h.mean_of(a, "loglik") - a[0]["neg_entropy"]) for a in at]
            ax.plot(steps, y, "s--" if label == "exact posterior" else "o-",
                    label=f"{label.split(',')[0]}" + (f", C = {corrector:g}" if part == "grid" else ""))
        floor = [r for r in rows if r["source"] == source and r.get("table_floor") is not None]
        if part == "grid" and floor:
            ax.axhline(floor[0]["table_floor"], color="k", ls=":", lw=1,
                       label=f"floor of {floor[0]['samples']:,} exact draws")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("CTMC Euler steps")
        ax.set_ylabel("TV(law, table)" if part == "grid" else "|mean log-lik - exact| (nats)")
        ax.set_title(f"{'checkerboard 64 x 64' if part == 'grid' else 'Markov strings'}, {source} source",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    h._save(fig, plt, ctx.file("png"))


SUITE = h.Suite(
    name=NAME, title="Discrete flow matching: TV and exact likelihood against sampling steps", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"seeds": [0], "steps": 200, "seq_steps": 50, "sources": ["mask"], "sampling_steps": [2, 8],
           "corrector": 0.0, "samples": 2000, "sample_at": [8], "seq_samples": 100, "hidden": [32], "dim": 16,
           "depth": 1},
    quick_file=True, pin=True, peak=False, history=history, table_rows=table_rows, extra_md=extra_md, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
