"""flowjax_fm.likelihood: log-densities of a flow by the instantaneous change of variables.

``log_prob`` integrates data back to the source while accumulating the divergence of the
vector field (exact, by batched Jacobian-vector products, or Hutchinson's estimator);
``bits_per_dim`` converts nats to bits per dimension.
"""

from flowjax_fm.likelihood._log_prob import (
    ESTIMATORS,
    PROBES,
    bits_per_dim,
    divergence,
    log_prob,
    standard_normal_log_prob,
)

__all__ = [
    "ESTIMATORS",
    "PROBES",
    "bits_per_dim",
    "divergence",
    "log_prob",
    "standard_normal_log_prob",
]
