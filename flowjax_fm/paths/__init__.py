"""flowjax_fm.paths."""
