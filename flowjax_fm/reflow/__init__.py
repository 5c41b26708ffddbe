"""flowjax_fm.reflow: rectified flow (reflow) and few-step distillation.

``generate_pairs`` pushes source points through a trained flow; ``reflow`` retrains on those
fixed pairs with the straight path (a straighter flow with the same marginals); ``distill``
fits a field that a few Euler steps follow exactly.
"""

from flowjax_fm.reflow._reflow import (
    GridTime,
    distill,
    fit_pairs,
    generate_pairs,
    paired_sampler,
    reflow,
)

__all__ = ["GridTime", "distill", "fit_pairs", "generate_pairs", "paired_sampler", "reflow"]
