"""The torchcfm side shared by the quality harnesses: its tutorial training loop and a counted dopri5.

torch is passed in (imported lazily by the callers, which must run without the peers).
"""

from __future__ import annotations

import time
import warnings


def train(torch, model, opt, matcher, draw, steps: int) -> float:
    """torchcfm's tutorial loop for ``steps`` steps; ``draw()`` gives ``(x0, x1)``. Wall seconds."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.zero_grad()
            x0, x1 = draw()
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            loss = torch.mean((model(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def dopri5(torch, torchdiffeq, model, x0, rtol: float):
    """``(x(1) as numpy, network evaluations)``: torchdiffeq dopri5 from ``x0`` at rtol = atol."""
    nfe = [0]

    def field(t, x):
        nfe[0] += 1
        return model(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))

    with torch.no_grad():
        x1 = torchdiffeq.odeint(field, x0, torch.tensor([0.0, 1.0]), method="dopri5", rtol=rtol, atol=rtol)[-1]
    return x1.numpy(), nfe[0]
