"""Flow-matching losses and the batched (t, x_t, u_t) primitive they are built on."""

from flowjax_fm.losses._cfm import (
    ConditionalSample,
    call_field,
    cfm_loss,
    pair_batch,
    paired_cfm_loss,
    per_example_keys,
    regress,
    sample_conditional,
)

__all__ = [
    "ConditionalSample",
    "call_field",
    "cfm_loss",
    "pair_batch",
    "paired_cfm_loss",
    "per_example_keys",
    "regress",
    "sample_conditional",
]
