"""Re-score a trained digits run at several NFE with the run's own classifier (issue 14).

    .venv/bin/python -m benchmarks.rescore_digits_run RUN_DIR [--nfe 1 2 4] [--out FILE.json]

Loads the run (``fm.experiments.load_run``), rebuilds its evaluator with ``eval.num_steps = K``
for each K and the run's evaluation key, and prints (or writes) the classifier accuracy and the
Frechet distance of the guided samples at each K. The classifier is the run's
``classifier.npz``, so the numbers compare with the run's own ``metrics.json`` (at its
``eval.num_steps`` they are the same to the last digit).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def rescore(run_dir: str, nfe: list[int]) -> dict:
    import jax

    import flowjax_fm as fm
    from flowjax_fm.experiments._data import load_task
    from flowjax_fm.experiments._evaluate import Evaluator

    run = fm.experiments.load_run(run_dir)
    if run.kind != "images" or run.num_classes is None:
        raise SystemExit(f"{run_dir}: not a class-conditional image run")
    if not (Path(run.directory) / "classifier.npz").is_file():
        # the evaluator would train one and save it into the run: this script only reads runs
        raise SystemExit(f"{run_dir}: no classifier.npz (the run's own classifier) to score with")
    out = {}
    for k in nfe:
        cfg = fm.experiments.override(run.config, {"eval.num_steps": k})
        _, k_eval = jax.random.split(jax.random.key(cfg.seed))  # the key training evaluated with
        ev = Evaluator(cfg, load_task(cfg, "images"), run.model, k_eval, Path(run.directory))
        t = time.perf_counter()
        res = ev.final(run.params(ema=run.has_ema), None)
        out[str(k)] = {"eval": res["eval"], "frechet_real": res["frechet_real"],
                       "eval_s": time.perf_counter() - t}
        print(k, json.dumps(res["eval"]), flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--nfe", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=None, help="write the scores to this JSON file")
    a = ap.parse_args(argv)
    res = rescore(a.run_dir, a.nfe)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
