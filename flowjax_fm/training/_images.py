r"""Class-conditional image training with label dropout, and the image job (train, evaluate, sample).

Classifier-free guidance needs one network that is both conditional and unconditional: during
training each label is replaced by the null class with probability ``p`` (label dropout), and at
sampling time :func:`flowjax_fm.sampling.guided_field` mixes the two velocities.

Label-aware OT and label dropout must not interfere: the coupling pairs noise and images using
the **true** labels (pairs never cross classes), and only the network sees the dropped labels.
The step of ``make_train_step(..., cond_dropout=p)`` (:func:`make_conditional_train_step`)
therefore pairs the batch first and drops labels second.

``train_images(config, workdir)`` is what ``flowjax-fm train --model unet`` runs;
``sample_images(run_dir, ...)`` is what ``flowjax-fm sample`` runs on such a run directory.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from flowjax_fm.couplings import AbstractCoupling
from flowjax_fm.training._step import drop_condition, make_conditional_train_step, make_train_step

__all__ = [
    "ImageTrainConfig",
    "conditional_batch",
    "fit_labelled",
    "label_dropout",
    "evaluate_images",
    "load_image_run",
    "make_conditional_train_step",
    "make_image_sampler",
    "sample_images",
    "train_images",
]


# --------------------------------------------------------------------------------------------
# label dropout and the labelled-array loop: thin forms of the general step and loop


def label_dropout(key: jax.Array, labels: jax.Array, p, null_label: int) -> jax.Array:
    r"""Replace each label by ``null_label`` with probability ``p``: :func:`drop_condition` on labels.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> label_dropout(jax.random.key(0), jnp.arange(4), 1.0, 10).tolist()
      [10, 10, 10, 10]
    """
    return drop_condition(key, labels, p, jnp.asarray(null_label, jnp.result_type(labels)))


def conditional_batch(
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    labels: jax.Array,
    *,
    coupling: AbstractCoupling,
    p,
    null_label: int,
):
    r"""Pair a labelled batch with the true labels, then drop labels for the network.

    Returns ``(x0p, x1p, labels_p, model_labels, pairing)``: the paired rows, the true labels of
    the pairs (``labels[pairing.target]``), the labels the network sees (each replaced by
    ``null_label`` with probability ``p``), and the :class:`~flowjax_fm.couplings.Pairing`.
    This is what the step of ``make_train_step(..., cond_dropout=p)`` does inside.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> x0 = jnp.zeros((4, 2)); x1 = jnp.ones((4, 2)); y = jnp.array([0, 1, 0, 1])
      >>> out = conditional_batch(jax.random.key(0), x0, x1, y,
      ...                         coupling=fm.couplings.ExactOTCoupling(), p=0.0, null_label=2)
      >>> bool((out[3] == out[2]).all())
      True
    """
    k_pair, k_drop = jax.random.split(key)
    pairing = coupling(k_pair, x0, x1, cond0=labels, cond1=labels)
    x0p, x1p = pairing.apply(x0, x1)
    labels_p = pairing.apply_target(labels)
    return x0p, x1p, labels_p, label_dropout(k_drop, labels_p, p, null_label), pairing


def fit_labelled(
    step: Callable,
    state,
    key: jax.Array,
    x,
    y,
    *,
    num_steps: int,
    batch_size: int,
    progress: bool = True,
    chunk_size: int = 250,
    on_chunk: Callable | None = None,
    unroll: int | None = None,
):
    r"""Train on labelled images ``(x, y)`` against Gaussian noise: :func:`fit` with ``source=None``.

    ``fit(step, state, key, None, (x, y), ...)`` (``y=None``: ``fit(..., None, x, ...)``):
    the images are visited in epochs, the noise :math:`x_0 \sim N(0, I)` is drawn per step,
    and the labels (or any condition pytree: float vectors are kept as they are) follow their
    images into ``step(state, k, x0, x1, cond=labels)``.

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(4, (16,), num_classes=2, rngs=nnx.Rngs(0))
      >>> opt = optax.adam(1e-3)
      >>> step = fm.training.make_conditional_train_step(model, optimizer=opt,
      ...                                                path=fm.paths.CondOTPath())
      >>> x = jax.numpy.ones((10, 2, 2, 1)); y = jax.numpy.arange(10) % 2
      >>> state, hist = fit_labelled(step, fm.training.init_state(model, opt), jax.random.key(0),
      ...                            x, y, num_steps=4, batch_size=4, progress=False)
      >>> hist["loss"].shape
      (4,)
    """
    from flowjax_fm.training._fit import fit

    target = jnp.asarray(x) if y is None else (jnp.asarray(x), jax.tree.map(jnp.asarray, y))
    return fit(step, state, key, None, target, num_steps=num_steps, batch_size=batch_size,
               progress=progress, chunk_size=chunk_size, on_chunk=on_chunk, unroll=unroll)


# --------------------------------------------------------------------------------------------
# the image job


@dataclasses.dataclass
class ImageTrainConfig:
    """Settings of one image run (saved as ``config.json`` in the run directory).

    ``target`` is ``"digits"`` (scikit-learn's 8x8 digits) or a ``.npy`` / ``.npz`` file
    (see :func:`flowjax_fm.data.load_array_dataset`; without labels the model is
    unconditional and only the loss is reported).
    """

    target: str = "digits"
    model: str = "unet"
    coupling: str = "independent"  # "independent" (I-CFM) or "exact-ot" (label-aware OT-CFM)
    path: str = "condot"
    sigma: float | None = None
    guidance_dropout: float = 0.1
    steps: int = 2000
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0
    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    ema_decay: float | None = 0.995
    guidance_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    eval_per_class: int = 50
    solver: str = "midpoint"
    num_steps: int = 10
    eval_every: int = 0  # also evaluate every this many steps (0: only at the end)
    chunk: int = 250
    checkpoint_every: int = 1000
    classifier_steps: int = 600
    test_fraction: float = 0.15

    def validate(self) -> None:
        from flowjax_fm import couplings, paths, sampling

        if self.model != "unet":
            raise ValueError(f"unknown image model {self.model!r}; choose 'unet'")
        if self.coupling not in couplings.COUPLINGS:
            raise ValueError(
                f"unknown coupling {self.coupling!r}; choose one of {sorted(couplings.COUPLINGS)}"
            )
        if self.path not in paths.PATHS:
            raise ValueError(f"unknown path {self.path!r}; choose one of {sorted(paths.PATHS)}")
        if self.solver not in sampling.SOLVER_NAMES:
            raise ValueError(
                f"unknown solver {self.solver!r}; choose one of {sorted(sampling.SOLVER_NAMES)}"
            )
        if self.target != "digits" and not self.target.endswith((".npy", ".npz")):
            raise ValueError(f"unknown target {self.target!r}: give 'digits' or a .npy/.npz file")
        if not 0.0 <= self.guidance_dropout <= 1.0:
            raise ValueError(f"guidance_dropout must be in [0, 1], got {self.guidance_dropout}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in ("steps", "batch", "eval_per_class", "num_steps", "chunk", "checkpoint_every",
                     "channels", "num_res_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["guidance_scales"] = list(self.guidance_scales)
        return d

    @classmethod
    def from_json(cls, d: dict) -> ImageTrainConfig:
        d = dict(d)
        for name in ("channel_mult", "guidance_scales"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def _load_target(config: ImageTrainConfig):
    """``(x, y or None)`` of the configured target, checked for the UNet's depth."""
    from flowjax_fm import data

    divisor = 2 ** (len(config.channel_mult) - 1)
    if config.target == "digits":
        x, y = data.load_digits()
        data._images.check_images(x, divisor=divisor, name="digits")
        return x, y
    return data.load_array_dataset(config.target, divisor=divisor)


def _split(n: int, test_fraction: float):
    """A fixed train / held-out split (seed 0, whatever the run's seed)."""
    perm = np.random.default_rng(0).permutation(n)
    n_test = max(int(round(n * test_fraction)), 2)
    return perm[n_test:], perm[:n_test]


def _build(config: ImageTrainConfig, image_shape, num_classes: int | None):
    from flowjax_fm import couplings, models, paths

    model = models.UNet(
        image_shape[-1],
        channels=config.channels,
        channel_mult=config.channel_mult,
        num_res_blocks=config.num_res_blocks,
        num_classes=num_classes,
        rngs=nnx.Rngs(config.seed),
    )
    if config.sigma is None:
        path = paths.get_path(config.path)
    elif config.path == "condot":
        path = paths.get_path(config.path, sigma_min=config.sigma)
    else:
        path = paths.get_path(config.path, sigma=config.sigma)
    coupling = couplings.get_coupling(config.coupling)
    optimizer = optax.adam(config.lr)
    common = dict(optimizer=optimizer, path=path, coupling=coupling, ema_decay=config.ema_decay)
    if num_classes is None:
        step = make_train_step(model, **common)
    else:
        step = make_conditional_train_step(
            model, **common, dropout=config.guidance_dropout, null_label=num_classes
        )
    return model, optimizer, step


def make_image_sampler(model: nnx.Module, *, num_classes, solver: str, num_steps: int):
    """A jitted ``gen(params, key, labels, scale, n) -> (x, nfe)`` for ``model``'s images.

    ``params``, ``labels`` and ``scale`` are traced, so every guidance scale and every
    checkpoint reuses one compiled solve. ``labels=None`` samples ``n`` images
    unconditionally; otherwise ``n`` is ``len(labels)`` and the field is guided.
    """
    from flowjax_fm import sampling
    from flowjax_fm.training._step import make_vector_field

    @jax.jit
    def guided(params, x0, labels, scale):
        field = sampling.guided_field(make_vector_field(model, params), scale, num_classes)
        res = sampling.sample(field, x0, solver=solver, num_steps=num_steps, cond=labels)
        return res.x, res.nfe

    @jax.jit
    def plain(params, x0):
        res = sampling.sample(make_vector_field(model, params), x0, solver=solver,
                              num_steps=num_steps)
        return res.x, res.nfe

    def gen(params, key, labels, scale, image_shape, n=None):
        n = len(labels) if labels is not None else n
        x0 = jax.random.normal(key, (n, *image_shape), jnp.float32)
        if labels is None:
            x, nfe = plain(params, x0)
        else:
            x, nfe = guided(params, x0, jnp.asarray(labels, jnp.int32),
                            jnp.asarray(scale, jnp.float32))
        return np.asarray(x), int(nfe)

    return gen


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tile(images: np.ndarray, rows: int) -> np.ndarray:
    """Tile ``(rows * cols, H, W, C)`` images into one ``(rows (H+1), cols (W+1), C)`` picture."""
    n, h, w, c = images.shape
    cols = -(-n // rows)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), -1.0, np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img
    return canvas


def save_grid(path: str | Path, panels: dict[str, np.ndarray], rows: int) -> None:
    """Save image grids (values in [-1, 1]) side by side, one titled panel each, as a PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, imgs) in zip(axes[0], panels.items(), strict=True):
        grid = np.clip((_tile(np.asarray(imgs, np.float32), rows) + 1.0) / 2.0, 0.0, 1.0)
        if grid.shape[-1] == 1:
            ax.imshow(grid[..., 0], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(grid[..., :3], interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate_images(
    gen, params, key, *, classifier, real_feats, num_classes, image_shape, config
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Accuracy and Frechet distance of ``eval_per_class`` samples per class at each scale.

    The same noise (``key``) is used at every guidance scale.
    """
    from flowjax_fm import metrics

    labels = np.repeat(np.arange(num_classes), config.eval_per_class).astype(np.int32)
    rows, samples = [], {}
    for w in config.guidance_scales:
        x, nfe = gen(params, key, labels, float(w), image_shape)
        rows.append({
            "guidance": float(w),
            "accuracy": metrics.classifier_accuracy(classifier, x, labels),
            "frechet": metrics.frechet_distance(
                metrics.classifier_features(classifier, x), real_feats
            ),
            "nfe": nfe,
        })
        samples[f"w={w:g}"] = x
    return rows, samples


def train_images(
    config: ImageTrainConfig, workdir: str | Path, *, progress: bool = True
) -> dict:
    """Train a UNet flow on images, checkpoint, evaluate at several guidance scales, plot.

    Writes into ``workdir``: ``config.json``, ``meta.json`` (image shape, classes), the
    orbax checkpoint under ``checkpoint/``, ``classifier.npz`` (the evaluation classifier,
    trained once on the training split), ``metrics.json`` and ``samples.png`` (one grid per
    guidance scale, a row per class).

    ``metrics.json`` holds ``loss``, ``steps_per_s``, ``compile_s``, ``train_s``, ``steps``,
    ``device`` and, for labelled data, ``eval``: a list of ``{guidance, accuracy, frechet,
    nfe}`` (Frechet distance in the classifier's penultimate features between
    ``eval_per_class`` samples per class and the held-out real images), ``frechet_real``
    (the same distance between real training and held-out images: the floor at this sample
    size), ``classifier_accuracy`` (on held-out real images), ``best_accuracy`` and, with
    ``eval_every``, ``history`` (the evaluation at intermediate steps).

    Returns:
      the metrics dict written to ``metrics.json``.

    Raises:
      ValueError: bad settings or a bad data file (one-line messages).
    """
    from flowjax_fm import metrics, training

    config.validate()
    workdir = Path(workdir)
    x, y = _load_target(config)
    image_shape = tuple(int(s) for s in x.shape[1:])
    num_classes = None if y is None else int(y.max()) + 1
    train_idx, test_idx = _split(len(x), config.test_fraction)
    x_train, x_test = x[train_idx], x[test_idx]
    y_train = None if y is None else y[train_idx]
    model, optimizer, step = _build(config, image_shape, num_classes)
    state = training.init_state(model, optimizer)

    workdir.mkdir(parents=True, exist_ok=True)
    training.write_json_atomic(workdir / "config.json", config.to_json())
    training.write_json_atomic(
        workdir / "meta.json",
        {"kind": "images", "image_shape": list(image_shape), "num_classes": num_classes},
    )
    key = jax.random.key(config.seed)
    k_train, k_clf, k_eval = jax.random.split(key, 3)

    classifier = real_feats = None
    if y is not None:
        classifier = metrics.train_or_load_classifier(
            workdir, k_clf, x_train, y_train, num_classes=num_classes,
            steps=config.classifier_steps,
        )
        real_feats = metrics.classifier_features(classifier, x_test)

    ckpt = training.Checkpointer(workdir / "checkpoint")
    chunk_times: list[tuple[float, int]] = []
    history_eval: list[dict] = []
    last = [time.perf_counter()]

    gen = make_image_sampler(
        model, num_classes=num_classes, solver=config.solver, num_steps=config.num_steps
    )
    params_of = lambda state: state.ema if config.ema_decay is not None else state.params

    def on_chunk(state, chunk_metrics):
        now = time.perf_counter()
        chunk_times.append((now - last[0], len(chunk_metrics["loss"])))
        s = int(state.step)
        n = len(chunk_metrics["loss"])
        if s % config.checkpoint_every < n or s == config.steps:
            ckpt.save(state)
        if classifier is not None and config.eval_every and (
            s % config.eval_every < n and s != config.steps
        ):
            rows, _ = evaluate_images(
                gen, params_of(state), k_eval, classifier=classifier, real_feats=real_feats,
                num_classes=num_classes, image_shape=image_shape, config=config,
            )
            history_eval.extend(dict(r, step=s) for r in rows)
        last[0] = time.perf_counter()

    state, history = fit_labelled(
        step, state, k_train, x_train, y_train, num_steps=config.steps, batch_size=config.batch,
        progress=progress, chunk_size=config.chunk, on_chunk=on_chunk,
    )
    if ckpt.latest_step() != int(state.step):
        ckpt.save(state)
    ckpt.close()

    if len(chunk_times) > 1:
        steady = sum(t for t, _ in chunk_times[1:]) / sum(n for _, n in chunk_times[1:])
        compile_s = max(chunk_times[0][0] - steady * chunk_times[0][1], 0.0)
        steps_per_s = 1.0 / steady
    else:
        compile_s, steps_per_s = float("nan"), chunk_times[0][1] / chunk_times[0][0]
    losses = history["loss"]
    result = {
        "loss": float(np.mean(losses[-min(len(losses), 200):])),
        "steps": int(state.step),
        "steps_per_s": float(steps_per_s),
        "images_per_s": float(steps_per_s * config.batch),
        "compile_s": float(compile_s),
        "train_s": float(sum(t for t, _ in chunk_times)),
        "device": jax.devices()[0].device_kind,
        "jax_version": jax.__version__,
    }
    if classifier is not None:
        t0 = time.perf_counter()
        rows, samples = evaluate_images(
            gen, params_of(state), k_eval, classifier=classifier, real_feats=real_feats,
            num_classes=num_classes, image_shape=image_shape, config=config,
        )
        result["eval_s"] = time.perf_counter() - t0
        result["eval"] = rows
        result["best_accuracy"] = max(r["accuracy"] for r in rows)
        result["classifier_accuracy"] = metrics.classifier_accuracy(classifier, x_test, y[test_idx])
        result["frechet_real"] = metrics.frechet_distance(
            metrics.classifier_features(classifier, x_train[: 10 * config.eval_per_class]),
            real_feats,
        )
        if history_eval:
            result["history"] = history_eval + [dict(r, step=int(state.step)) for r in rows]
        per_class = min(config.eval_per_class, 8)
        panels = {
            k: v.reshape(num_classes, config.eval_per_class, *image_shape)[:, :per_class].reshape(
                -1, *image_shape
            )
            for k, v in samples.items()
        }
        save_grid(workdir / "samples.png", panels, rows=num_classes)
    else:
        x_gen, result["nfe"] = gen(params_of(state), k_eval, None, 0.0, image_shape, n=64)
        save_grid(workdir / "samples.png", {"samples": x_gen}, rows=8)
    training.write_json_atomic(workdir / "metrics.json", result)
    return result


def load_image_run(run_dir: str | Path, *, use_ema: bool = True):
    """Rebuild ``(config, model, params, meta)`` from a run directory written by :func:`train_images`.

    ``params`` are the EMA parameters (when the run kept an EMA and ``use_ema``) or the raw
    ones; ``fm.training.make_vector_field(model, params)`` is the vector field.

    Raises:
      ValueError: if ``run_dir`` is not an image run directory.
    """
    from flowjax_fm import training

    run_dir = Path(run_dir)
    meta_path, cfg_path = run_dir / "meta.json", run_dir / "config.json"
    if not cfg_path.is_file() or not meta_path.is_file():
        raise ValueError(f"{run_dir} is not an image run directory: no config.json / meta.json")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != "images":
        raise ValueError(f"{run_dir} is not an image run directory (meta.json kind)")
    config = ImageTrainConfig.from_json(json.loads(cfg_path.read_text()))
    model, optimizer, _ = _build(config, tuple(meta["image_shape"]), meta["num_classes"])
    state = training.Checkpointer(run_dir / "checkpoint").restore(
        training.init_state(model, optimizer)
    )
    params = state.ema if (use_ema and config.ema_decay is not None) else state.params
    return config, model, params, meta


def sample_images(
    run_dir: str | Path,
    label: int | None,
    guidance: float,
    n: int,
    out: str | Path,
    *,
    seed: int = 0,
    solver: str | None = None,
    num_steps: int | None = None,
) -> np.ndarray:
    """Draw ``n`` images of class ``label`` with guidance ``guidance`` from a trained run.

    Writes ``out/samples.npy`` (``(n, H, W, C)`` float32, values about [-1, 1]) and
    ``out/samples.png`` (a grid). ``label=None`` samples the unconditional (null-class)
    model. ``solver`` / ``num_steps`` default to the run's evaluation settings.

    Returns:
      the samples.

    Raises:
      ValueError: not an image run, ``n < 1``, a label outside ``[0, num_classes)``, or a
        label given to an unconditional run.
    """
    config, model, params, meta = load_image_run(run_dir)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    num_classes = meta["num_classes"]
    image_shape = tuple(meta["image_shape"])
    if label is not None:
        if num_classes is None:
            raise ValueError(f"{run_dir} holds an unconditional model: no --label")
        if isinstance(label, bool) or not 0 <= int(label) < num_classes:
            raise ValueError(f"label must lie in [0, {num_classes - 1}], got {label}")
    gen = make_image_sampler(
        model, num_classes=num_classes, solver=solver or config.solver,
        num_steps=num_steps or config.num_steps,
    )
    key = jax.random.key(seed)
    if num_classes is None:
        x, _ = gen(params, key, None, 0.0, image_shape, n=n)
    else:
        lab = num_classes if label is None else int(label)
        x, _ = gen(params, key, np.full((n,), lab, np.int32), float(guidance), image_shape)
    x = x.astype(np.float32)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", x)
    title = f"label {label}, w={guidance:g}" if label is not None else "unconditional"
    save_grid(out / "samples.png", {title: x}, rows=max(1, int(np.sqrt(n))))
    return x
