"""The peers (torch, torchcfm, POT, torchdiffeq), imported on demand, and the torch side the suites share.

Nothing here imports a peer at import time: the suites run without them (CI installs the
``test`` extra only) and say which side they skipped and why (:func:`missing`, :func:`skipped`).
torch runs one thread (:func:`torch`), as ours runs on one core.
"""

from __future__ import annotations

import functools
import importlib
import os
import time
import warnings

import numpy as np

INSTALL = "install the peers extra: pip install -e '.[peers]', then pip install --no-deps torchcfm torchdyn"


def missing(*names: str) -> str | None:
    """Why one of the peers ``names`` ("torch", "torchcfm", "ot", "torchdiffeq") cannot be imported; None if all can."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return f"{name} not installed ({exc})"
    return None


def skipped(side: str, reason: str) -> str:
    """Print and return ``"SIDE skipped: REASON; install ..."``."""
    text = f"{side} skipped: {reason}; {INSTALL}"
    print(text, flush=True)
    return text


def start(side: str, *names: str, off: str | None = None) -> str | None:
    """Make the peers ``names`` ready for ``side`` (torch on one thread), or say why not.

    Returns the reason the side is skipped (``off``, or the first peer missing), else None.
    """
    reason = off or missing(*names)
    if reason:
        skipped(side, reason)
    elif "torch" in names:
        torch()
    return reason


@functools.cache
def torch():
    """The torch module, one intra-op and one inter-op thread."""
    import torch as t

    t.set_num_threads(1)
    try:
        t.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran
        pass
    return t


def pot():
    import ot

    return ot


def torchdiffeq():
    import torchdiffeq as tde

    return tde


def seed(s: int) -> None:
    """torch's and numpy's global seeds (torchcfm's OT pair sampler draws from numpy's global RNG)."""
    torch().manual_seed(s)
    np.random.seed(s)  # noqa: NPY002 - the global RNG is what torchcfm uses


# -- torchcfm ------------------------------------------------------------------------------


def matcher(method: str, sigma: float = 0.1, ot_method: str = "exact"):
    """torchcfm's flow matcher of a method: I-CFM, OT-CFM, FM (Lipman), SB-CFM."""
    from torchcfm import conditional_flow_matching as cfm

    if method == "SB-CFM":
        return cfm.SchrodingerBridgeConditionalFlowMatcher(sigma=sigma, ot_method=ot_method)
    return {"I-CFM": cfm.ConditionalFlowMatcher, "OT-CFM": cfm.ExactOptimalTransportConditionalFlowMatcher,
            "FM": cfm.TargetConditionalFlowMatcher}[method](sigma=sigma)


def mlp(dim: int, width: int):
    """torchcfm's ``MLP(dim, time_varying=True, w=width)``: [x, t] -> 3 x width SELU -> dim."""
    from torchcfm.models.models import MLP

    return MLP(dim=dim, time_varying=True, w=width)


def toy(name: str, n: int):
    """torchcfm's own 2D samplers: ``"8gaussians"``, ``"moons"``."""
    from torchcfm.utils import sample_8gaussians, sample_moons

    return {"8gaussians": sample_8gaussians, "moons": sample_moons}[name](n)


def train(model, opt, matcher, draw, steps: int, batches=None) -> float:
    """torchcfm's tutorial loop for ``steps`` steps; wall seconds.

    Each step: ``(x0, x1) = draw()`` (or ``batches[i]``), ``sample_location_and_conditional_flow``,
    the squared error of the network on ``[xt, t]`` against ``ut``, backward, optimizer step.
    """
    t = torch()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(steps):
            opt.zero_grad()
            x0, x1 = batches[i] if batches is not None else draw()
            s, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            loss = t.mean((model(t.cat([xt, s[:, None]], dim=-1)) - ut) ** 2)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


class CountedField:
    """``f(t, x) = net([x, t])`` for ``torchdiffeq.odeint``, counting its evaluations in ``nfe``."""

    def __init__(self, net):
        self.net, self.nfe = net, 0

    def __call__(self, s, x):
        self.nfe += 1
        t = torch()
        return self.net(t.cat([x, s.expand(x.shape[0], 1).to(x.dtype)], dim=-1))


def dopri5(net, x0, rtol: float):
    """``(x(1) as numpy, network evaluations)``: torchdiffeq dopri5 from ``x0`` at rtol = atol."""
    t = torch()
    field = CountedField(net)
    with t.no_grad():
        x1 = torchdiffeq().odeint(field, x0, t.tensor([0.0, 1.0]), method="dopri5", rtol=rtol, atol=rtol)[-1]
    return x1.numpy(), field.nfe


def euler(net, x0, steps: int) -> np.ndarray:
    """``x(1)`` by ``steps`` Euler steps of ``net([x, t])`` from ``x0``."""
    t = torch()
    with t.no_grad():
        x, dt = x0.clone(), 1.0 / steps
        for i in range(steps):
            x = x + dt * net(t.cat([x, t.full((x.shape[0], 1), i * dt)], dim=-1))
    return x.numpy()


def torchcfm_job(method: str, seed_: int, steps: int, *, batch: int, source, target, x_eval,
                 lr: float = 1e-3, weight_decay: float | None = None, sigma: float = 0.1,
                 ot_method: str = "exact", width: int = 64, euler_steps: int | None = None,
                 rtol: float = 1e-4) -> dict:
    """Train torchcfm's 2D model as its tutorial does, then sample: the peer's side of the quality suites.

    ``source`` / ``target``: a torchcfm toy name (a fresh batch each step) or an array (batches
    drawn with replacement). ``x_eval``: the evaluation's source points, or their number (drawn
    from the source sampler). Adam (AdamW with ``weight_decay``). Returns ``train_s``,
    ``steps_per_s``, ``x_dopri5`` (dopri5 at rtol = atol = ``rtol``), ``nfe``, ``sample_s``,
    ``x_euler`` (with ``euler_steps``) and, for a toy target, ``x_target`` (as many fresh target
    points, drawn after sampling).
    """
    t = torch()
    seed(seed_)
    m = matcher(method, sigma, ot_method)
    model = mlp(2, width)
    opt = (t.optim.Adam(model.parameters(), lr) if weight_decay is None
           else t.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay))

    def drawer(side):
        if isinstance(side, str):
            return lambda: toy(side, batch)
        points = t.tensor(np.asarray(side))
        return lambda: points[t.randint(0, len(points), (batch,))]

    draw0, draw1 = drawer(source), drawer(target)
    train_s = train(model, opt, m, lambda: (draw0(), draw1()), steps)
    x0 = toy(source, x_eval) if isinstance(x_eval, int) else t.tensor(np.asarray(x_eval))
    start = time.perf_counter()
    out = {"train_s": train_s, "steps_per_s": steps / train_s}
    if euler_steps:
        out["x_euler"] = euler(model, x0, euler_steps)
    out["x_dopri5"], out["nfe"] = dopri5(model, x0, rtol)
    out["sample_s"] = time.perf_counter() - start
    if isinstance(target, str):
        out["x_target"] = toy(target, len(x0)).numpy()
    return out


_WORKER = None


def in_worker(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a spawned worker process pinned to this process's cores.

    Keeps torch's and POT's thread runtimes (each with its own libgomp) out of the JAX process;
    the worker imports this module, not JAX.
    """
    global _WORKER
    if _WORKER is None:
        import multiprocessing

        _WORKER = multiprocessing.get_context("spawn").Pool(1)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return _WORKER.apply(_pinned_call, (cores, fn, args, kwargs))


def _pinned_call(cores, fn, args, kwargs):
    if cores is not None:
        os.sched_setaffinity(0, cores)
    return fn(*args, **kwargs)


# -- networks and solvers in torch -----------------------------------------------------------


def torch_mlp(weights, activation: str = "selu"):
    """A torch module ``h -> ... -> out``: ``weights`` = [(kernel (in, out), bias)], the activation
    between layers (``torch.nn.functional.linear`` per layer, as ``nn.Linear`` computes it)."""
    t = torch()
    act = {"selu": t.nn.functional.selu, "silu": t.nn.functional.silu}[activation]
    params = [(t.tensor(np.asarray(w, np.float32).T.copy()), t.tensor(np.asarray(b, np.float32)))
              for w, b in weights]

    class MLP(t.nn.Module):
        def forward(self, h):
            for i, (w, b) in enumerate(params):
                h = t.nn.functional.linear(h, w, b)
                if i < len(params) - 1:
                    h = act(h)
            return h

    return MLP()


# -- POT -----------------------------------------------------------------------------------


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, sorted({str(w.message) for w in caught})


def pot_emd(x0: np.ndarray, x1: np.ndarray):
    """``(plan, warnings)``: ``ot.dist`` + ``ot.emd`` (network simplex, default ``numItermax``)."""
    ot = pot()
    a = np.full(len(x0), 1.0 / len(x0))
    return _caught(lambda: ot.emd(a, a, ot.dist(x0, x1)))


def pot_sinkhorn(x0: np.ndarray, x1: np.ndarray, reg: float, stop_thr: float):
    """``(plan, iterations, warnings)``: ``ot.dist`` + ``ot.sinkhorn`` (float64, uniform weights)."""
    ot = pot()
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    w = np.full(len(a), 1.0 / len(a))
    (plan, log), warns = _caught(lambda: ot.sinkhorn(w, w, ot.dist(a, b), reg, stopThr=stop_thr, log=True))
    return plan, int(log["niter"]), sorted({m[:60] for m in warns})
