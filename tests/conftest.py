"""Session-wide test configuration.

Tests run on 8 fake CPU devices (set before JAX initialises) so that the multi-device drivers
are exercised on any machine; single-device code is unaffected.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)

# Tolerances per dtype: (rtol, atol).
TOL = {"float32": (1e-5, 1e-5), "float64": (1e-12, 1e-12)}

# Scripts run as subprocesses by the tests; never imported (--doctest-modules would run them).
collect_ignore = ["workers"]
