"""flowjax_fm.sampling."""
