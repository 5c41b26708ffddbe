"""flowjax_fm.data."""
