"""flowjax_fm.metrics."""
