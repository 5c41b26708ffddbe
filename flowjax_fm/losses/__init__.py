"""flowjax_fm.losses."""
