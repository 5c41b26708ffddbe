"""Flow-matching losses."""

from flowjax_fm.losses._cfm import call_field, cfm_loss

__all__ = ["call_field", "cfm_loss"]
