"""Flow-matching losses."""

from flowjax_fm.losses._cfm import (
    call_field,
    cfm_loss,
    pair_batch,
    paired_cfm_loss,
    per_example_keys,
)

__all__ = ["call_field", "cfm_loss", "pair_batch", "paired_cfm_loss", "per_example_keys"]
