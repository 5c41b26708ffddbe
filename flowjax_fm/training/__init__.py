"""flowjax_fm.training."""
