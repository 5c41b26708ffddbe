"""flowjax_fm.likelihood."""
