"""Benchmark suites of flowjax_fm (run ``python -m benchmarks --suite NAME``).

Importing this package sets one BLAS / OpenMP thread per library (unless already set), before
any suite imports numpy: set later, OpenBLAS has already started a thread per core and fights the
pinned thread for it (measured: POT's Sinkhorn at n = 1,024 went from ~50 ms to 545 ms). Every
suite runs as a module of this package (``python -m benchmarks.bench_train``), so this runs first.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
