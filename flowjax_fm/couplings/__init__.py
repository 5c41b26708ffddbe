"""flowjax_fm.couplings."""
