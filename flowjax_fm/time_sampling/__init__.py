"""flowjax_fm.time_sampling."""
