"""Benchmark suites of flowjax_fm (run ``python -m benchmarks --suite NAME``)."""
