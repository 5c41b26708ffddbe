"""Evaluation of a run, by kind: W2 and NFE for points; classifier accuracy and Frechet
distance at several guidance scales for labelled images (NFE alone for unlabelled ones)."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm.experiments._config import FEW_STEP

__all__ = ["Evaluator", "make_image_sampler"]


def make_image_sampler(model, *, num_classes, solver: str, num_steps, rtol=1e-4, atol=1e-4,
                       objective: str = "cfm"):
    """A jitted ``gen(params, key, labels, scale, image_shape, n=None) -> (x, nfe)``.

    ``params``, ``labels`` and ``scale`` are traced, so every guidance scale and every
    checkpoint reuses one compiled solve. ``labels=None`` samples unconditionally (the null
    class of a conditional model); otherwise ``n = len(labels)`` and the field is guided.
    ``solver="few-step"`` samples with ``num_steps`` jumps (see
    :func:`~flowjax_fm.experiments._generate.generate`).
    """
    from flowjax_fm.experiments._generate import generate

    opts = dict(solver=solver, num_steps=num_steps, rtol=rtol, atol=atol)

    @jax.jit
    def guided(params, x0, labels, scale):
        res = generate(model, params, objective, x0, cond=labels, guidance=scale,
                       num_classes=num_classes, **opts)
        return res.x, res.nfe

    @jax.jit
    def plain(params, x0):
        res = generate(model, params, objective, x0, **opts)
        return res.x, res.nfe

    def gen(params, key, labels, scale, image_shape, n=None):
        n = len(labels) if labels is not None else n
        x0 = jax.random.normal(key, (n, *image_shape), jnp.float32)
        if labels is None and num_classes is None:
            x, nfe = plain(params, x0)
        else:
            labels = np.full((n,), num_classes, np.int32) if labels is None else labels
            x, nfe = guided(params, x0, jnp.asarray(labels, jnp.int32), jnp.asarray(scale, jnp.float32))
        return np.asarray(x), int(nfe)

    return gen


class Evaluator:
    """Evaluates params of one run: ``scalars(params)`` for the training log, ``final(params,
    workdir)`` for ``metrics.json`` and the figures."""

    def __init__(self, config, task, model, key, workdir: Path | None, *, is_main: bool = True):
        self.config, self.task, self.model = config, task, model
        self.key = key
        self.classifier = self.real_feats = None
        if task.kind == "images":
            self.gen = make_image_sampler(
                model,
                num_classes=task.num_classes,
                solver=config.eval.solver,
                num_steps=config.eval.num_steps,
                rtol=config.eval.rtol,
                atol=config.eval.atol,
                objective=config.objective,
            )
            if task.num_classes is not None:
                self._classifier(workdir, is_main)

    def _classifier(self, workdir, is_main):
        from flowjax_fm import metrics

        x_train, y_train = self.task.target
        k_clf = jax.random.fold_in(self.key, 1)
        kwargs = dict(num_classes=self.task.num_classes, steps=self.config.eval.classifier_steps)
        if is_main and workdir is not None:
            self.classifier = metrics.train_or_load_classifier(
                workdir, k_clf, np.asarray(x_train), np.asarray(y_train), **kwargs
            )
        else:
            self.classifier = metrics.train_digit_classifier(
                k_clf, np.asarray(x_train), np.asarray(y_train), **kwargs
            )
        self.real_feats = metrics.classifier_features(self.classifier, self.task.x_test)

    # -- points ------------------------------------------------------------------------------

    def _generate(self, params, x0, num_steps=None, **kw):
        from flowjax_fm.experiments._generate import generate

        e = self.config.eval
        return generate(self.model, params, self.config.objective, x0, solver=e.solver,
                        num_steps=e.num_steps if num_steps is None else num_steps, rtol=e.rtol,
                        atol=e.atol, **kw)

    def _family(self, params, n: int):
        from flowjax_fm.experiments._data import draw
        from flowjax_fm.experiments._families import evaluate_family, generate_family

        e, task = self.config.eval, self.task
        k0, k1, k2 = jax.random.split(self.key, 3)
        x0 = jnp.asarray(draw(task.source, k0, n, task.event_shape))
        x_ref = draw(task.target, k1, n, task.event_shape)
        res = generate_family(task.kind, self.model, params, x0, num_steps=e.num_steps,
                              solver=e.solver, key=k2, extra=task.extra)
        x_gen = np.asarray(res if task.kind == "tokens" else res.x)
        out = evaluate_family(task.kind, x_gen, x_ref, task.extra)
        out["nfe"] = int(e.num_steps if task.kind == "tokens" else res.nfe)
        return out, (x_gen, x_ref)

    def _points(self, params, n: int):
        from flowjax_fm import metrics
        from flowjax_fm.experiments._data import draw

        e = self.config.eval
        k0, k1 = jax.random.split(self.key)
        x0 = jnp.asarray(draw(self.task.source, k0, n, self.task.event_shape))
        x_ref = draw(self.task.target, k1, n, self.task.event_shape)
        res = self._generate(params, x0)
        x_gen = np.asarray(res.x)
        m = min(len(x_gen), len(x_ref))
        w2 = float(metrics.wasserstein(x_gen[:m].reshape(m, -1), x_ref[:m].reshape(m, -1), p=2))
        out = {"w2": w2, "nfe": int(res.nfe), "eval_samples": int(m)}
        if e.solver == FEW_STEP:  # few-step runs: W2 at 1, 2 and 4 jumps as well
            for k in (1, 2, 4):
                if k != e.num_steps:
                    xk = np.asarray(self._generate(params, x0, num_steps=k).x)
                    out[f"w2_{k}step"] = float(metrics.wasserstein(
                        xk[:m].reshape(m, -1), x_ref[:m].reshape(m, -1), p=2))
                else:
                    out[f"w2_{k}step"] = w2
        return out, (x0, x_gen, x_ref)

    # -- images ------------------------------------------------------------------------------

    def _image_rows(self, params):
        from flowjax_fm import metrics

        e, k = self.config.eval, self.task.num_classes
        labels = np.repeat(np.arange(k), e.per_class).astype(np.int32)
        rows, samples = [], {}
        for w in e.guidance_scales:
            x, nfe = self.gen(params, self.key, labels, float(w), self.task.event_shape)
            rows.append(
                {
                    "guidance": float(w),
                    "accuracy": metrics.classifier_accuracy(self.classifier, x, labels),
                    "frechet": metrics.frechet_distance(
                        metrics.classifier_features(self.classifier, x), self.real_feats
                    ),
                    "nfe": nfe,
                }
            )
            samples[f"w={w:g}"] = x
        return rows, samples

    def scalars(self, params) -> dict:
        """A few numbers for the training log (evaluation every ``eval.every`` steps)."""
        from flowjax_fm.experiments._families import FAMILY_KINDS

        if self.task.kind in FAMILY_KINDS:
            return self._family(params, self.config.eval.samples)[0]
        if self.task.kind == "points":
            return self._points(params, self.config.eval.samples)[0]
        if self.classifier is None:
            return {}
        rows, _ = self._image_rows(params)
        out = {}
        for r in rows:
            out[f"accuracy_w{r['guidance']:g}"] = r["accuracy"]
            out[f"frechet_w{r['guidance']:g}"] = r["frechet"]
        return out

    def final(self, params, workdir: Path | None) -> dict:
        """The final evaluation; with ``workdir``, also the samples and figures."""
        from flowjax_fm import metrics
        from flowjax_fm.experiments import _plots

        e = self.config.eval
        from flowjax_fm.experiments._families import FAMILY_KINDS, plot_family

        if self.task.kind in FAMILY_KINDS:
            result, (x_gen, x_ref) = self._family(params, e.samples)
            if workdir is not None:
                plot_family(self.task.kind, workdir / "samples.png", x_gen, x_ref, self.task.extra)
                np.save(workdir / "samples.npy", x_gen)
            return result
        if self.task.kind == "points":
            result, (x0, x_gen, x_ref) = self._points(params, e.samples)
            if workdir is not None:
                traj = self._generate(params, x0[:300], save_trajectory=True).trajectory
                _plots.plot_points(workdir / "samples.png", x_gen, x_ref)
                _plots.plot_trajectories(workdir / "trajectories.png", traj)
                np.save(workdir / "samples.npy", x_gen)
            return result
        shape = self.task.event_shape
        if self.classifier is None:
            x_gen, nfe = self.gen(params, self.key, None, 0.0, shape, n=64)
            if workdir is not None:
                _plots.save_grid(workdir / "samples.png", {"samples": x_gen}, rows=8)
            return {"nfe": nfe}
        t0 = time.perf_counter()
        rows, samples = self._image_rows(params)
        x_train = np.asarray(self.task.target[0])
        result = {
            "eval_s": time.perf_counter() - t0,
            "eval": rows,
            "best_accuracy": max(r["accuracy"] for r in rows),
            "classifier_accuracy": metrics.classifier_accuracy(
                self.classifier, self.task.x_test, self.task.y_test
            ),
            "frechet_real": metrics.frechet_distance(
                metrics.classifier_features(self.classifier, x_train[: 10 * e.per_class]), self.real_feats
            ),
        }
        if workdir is not None:
            k, per = self.task.num_classes, min(e.per_class, 8)
            panels = {
                name: x.reshape(k, e.per_class, *shape)[:, :per].reshape(-1, *shape)
                for name, x in samples.items()
            }
            _plots.save_grid(workdir / "samples.png", panels, rows=k)
        return result
