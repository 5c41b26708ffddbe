"""The run kinds beyond points and images: flows on manifolds (``sphere``, ``torus``) and
discrete flows over tokens (``tokens``).

Each kind names its toy targets, its source, its manifold or vocabulary, how it generates and
how it is scored: geodesic W2 on a manifold (exact OT on the squared geodesic cost, as
``fm.couplings.ExactOTCoupling(manifold=M)`` pairs), total variation for tokens (against the
exact table of a grid toy, the per-position marginals of a token file), and the exact
log-likelihood of the Markov-chain toy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FAMILY_KINDS", "family_kind", "manifold_of", "load_family", "evaluate_family",
           "generate_family", "plot_family"]

MANIFOLD_TARGETS = {"sphere-vmf": "sphere", "torus-mixture": "torus"}
TOKEN_TARGETS = ("checkerboard-tokens", "moons-tokens", "markov-digits")
FAMILY_KINDS = ("sphere", "torus", "tokens")


def family_kind(target: str, array=None) -> str | None:
    """The kind of a target name (``None``: not a family target); ``array``: a loaded file."""
    if target in MANIFOLD_TARGETS:
        return MANIFOLD_TARGETS[target]
    if target in TOKEN_TARGETS:
        return "tokens"
    if array is not None and np.issubdtype(array.dtype, np.integer) and array.ndim == 2:
        return "tokens"
    return None


def manifold_of(kind: str):
    from flowjax_fm import manifolds

    return {"sphere": manifolds.Sphere(), "torus": manifolds.FlatTorus()}.get(kind)


def _token_target(config):
    """``(target, vocab, length, exact)``: a sampler or an int array, and what scores it."""
    from flowjax_fm.data import _token_toys as toys

    target = config.target
    if target == "markov-digits":
        vocab, length = 10, 16
        return (lambda k, n: toys.markov_digits(k, n, length=length, vocab=vocab)), vocab, length, \
            ("markov", None)
    if target in TOKEN_TARGETS:
        name = target.removesuffix("-tokens")
        vocab = 64
        probs = np.asarray(toys.grid_token_probs(name, vocab))
        return (lambda k, n: toys.grid_tokens(k, n, name=name, vocab=vocab)), vocab, 2, \
            ("table", probs)
    x = np.load(target, allow_pickle=False)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer) or x.min() < 0:
        raise ValueError(f"{target}: token data must be non-negative integers (N, L), got "
                         f"{x.dtype} {x.shape}")
    if int(x.max()) < 1:
        raise ValueError(
            f"{target}: an integer array is token data (a tokens run) and needs at least 2 "
            f"token values, got only {int(x.max())}; points must be floating point"
        )
    return x.astype(np.int32), int(x.max()) + 1, int(x.shape[1]), ("marginals", x)


def load_family(config, kind: str):
    """The :class:`Task` of a family run; its ``extra`` holds the manifold or the vocabulary."""
    from flowjax_fm import data as mt
    from flowjax_fm import discrete
    from flowjax_fm.experiments._data import Task

    if kind in ("sphere", "torus"):
        if config.source != "uniform":
            raise ValueError(f"a {kind} run's source is 'uniform' (on the {kind}), got {config.source!r}")
        target = mt.sphere_vmf_mixture if kind == "sphere" else mt.torus_wrapped_mixture
        source = mt.sphere_uniform if kind == "sphere" else mt.torus_uniform
        event = (3,) if kind == "sphere" else (2,)
        return Task(kind, event, None, source, target, extra={"manifold": manifold_of(kind)})
    target, vocab, length, exact = _token_target(config)
    if config.source == "uniform":
        source = lambda k, n: discrete.uniform_source(k, (n, length), vocab)  # noqa: E731
        model_vocab, mask = vocab, None
    elif config.source == "mask":
        source = lambda k, n: discrete.mask_source((n, length), vocab)  # noqa: E731
        model_vocab, mask = vocab + 1, vocab
    else:
        raise ValueError(f"a tokens run's source is 'uniform' or 'mask', got {config.source!r}")
    return Task(kind, (length,), None, source, target, extra={
        "vocab": vocab, "model_vocab": model_vocab, "mask": mask, "exact": exact})


def generate_family(kind, model, params, x0, *, num_steps, solver="rk4", key=None, extra=None,
                    save_trajectory=False):
    """Samples of a family run: a projected ODE solve on a manifold, CTMC steps for tokens."""
    import jax

    from flowjax_fm import discrete, paths, sampling, training

    field = training.make_vector_field(model, params)
    if kind in ("sphere", "torus"):
        return sampling.sample(field, x0, solver=solver, num_steps=num_steps,
                               manifold=manifold_of(kind), save_trajectory=save_trajectory)
    key = jax.random.key(0) if key is None else key
    path = discrete.MixtureDiscretePath(paths.CondOTSchedule())
    return discrete.sample(field, key, x0, path=path, num_steps=num_steps)


def _geodesic_w2(manifold, a, b) -> float:
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(manifold.squared_distances(a, b), np.float64)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def _tv_counts(x, probs) -> float:
    v = probs.shape[0]
    hist = np.zeros((v, v))
    np.add.at(hist, (x[:, 0], x[:, 1]), 1.0)
    return float(0.5 * np.abs(hist / len(x) - probs).sum())


def _marginal_tv(x, data, vocab) -> float:
    tvs = []
    for j in range(x.shape[1]):
        p = np.bincount(x[:, j], minlength=vocab) / len(x)
        q = np.bincount(data[:, j], minlength=vocab) / len(data)
        tvs.append(0.5 * np.abs(p - q).sum())
    return float(np.mean(tvs))


def evaluate_family(kind, x_gen, x_ref, extra) -> dict:
    """The scores of generated samples against reference samples (or the exact law)."""
    x_gen = np.asarray(x_gen)
    if kind in ("sphere", "torus"):
        m = min(len(x_gen), len(x_ref))
        return {"w2": _geodesic_w2(extra["manifold"], x_gen[:m], np.asarray(x_ref)[:m])}
    how, exact = extra["exact"]
    vocab = extra["vocab"]
    out = {"invalid": float(np.mean(x_gen >= vocab))}
    x = np.minimum(x_gen, vocab - 1)
    if how == "table":
        out["tv"] = _tv_counts(x, exact)
    elif how == "markov":
        from flowjax_fm.data import _token_toys as toys

        out["loglik"] = float(np.mean(np.asarray(toys.markov_log_prob(x))))
        out["loglik_data"] = float(np.mean(np.asarray(toys.markov_log_prob(np.asarray(x_ref)))))
    else:
        out["marginal_tv"] = _marginal_tv(x, exact, vocab)
    return out


def plot_family(kind, path, x_gen, x_ref, extra) -> None:
    """``samples.png``: longitude / latitude (sphere), angles (torus), a token grid image;
    the target beside the samples when ``x_ref`` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(np.asarray(x_gen), "generated")]
    if x_ref is not None:
        panels.insert(0, (np.asarray(x_ref), "target"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (x, title) in zip(axes[0], panels, strict=True):
        if kind == "sphere":
            lon, lat = np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1, 1))
            ax.scatter(lon, lat, s=2, alpha=0.4)
            ax.set(xlabel="longitude", ylabel="latitude", xlim=(-np.pi, np.pi), ylim=(-np.pi / 2, np.pi / 2))
        elif kind == "torus":
            ang = np.mod(x + np.pi, 2 * np.pi) - np.pi
            ax.scatter(ang[:, 0], ang[:, 1], s=2, alpha=0.4)
            ax.set(xlabel="phi", ylabel="psi", xlim=(-np.pi, np.pi), ylim=(-np.pi, np.pi))
        elif x.shape[1] == 2:
            v = extra["vocab"]
            hist = np.zeros((v, v))
            xc = np.minimum(x, v - 1)
            np.add.at(hist, (xc[:, 0], xc[:, 1]), 1.0)
            ax.imshow(hist.T, origin="lower", cmap="magma")
        else:
            ax.imshow(np.minimum(x[:64], extra["vocab"] - 1), cmap="tab10", aspect="auto")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
