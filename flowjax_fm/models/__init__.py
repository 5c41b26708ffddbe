"""flowjax_fm.models."""
