"""Flow-matching losses and the batched (t, x_t, u_t) primitive they are built on."""

from flowjax_fm.losses._cfm import (
    ConditionalSample,
    call_field,
    cfm_loss,
    pair_batch,
    paired_cfm_loss,
    per_example_keys,
    regress,
    sample_conditional,
)
from flowjax_fm.losses._few_step import (
    OBJECTIVES,
    AbstractObjective,
    CFMObjective,
    CondDrop,
    ConsistencyObjective,
    MeanFlowObjective,
    ShortcutObjective,
    call_two_time,
    consistency_loss,
    get_objective,
    meanflow_loss,
    shortcut_loss,
)
from flowjax_fm.losses._score import SCORE_WEIGHTINGS, SF2MObjective, score_loss, split_flow_score
from flowjax_fm.losses._weighting import cosmap_weight, logit_normal_weight, sigma_sqrt_weight

__all__ = [
    "OBJECTIVES",
    "AbstractObjective",
    "CFMObjective",
    "CondDrop",
    "ConsistencyObjective",
    "MeanFlowObjective",
    "ShortcutObjective",
    "call_two_time",
    "consistency_loss",
    "get_objective",
    "meanflow_loss",
    "shortcut_loss",
    "cosmap_weight",
    "logit_normal_weight",
    "sigma_sqrt_weight",
    "ConditionalSample",
    "call_field",
    "cfm_loss",
    "pair_batch",
    "paired_cfm_loss",
    "per_example_keys",
    "regress",
    "sample_conditional",
    "SCORE_WEIGHTINGS",
    "SF2MObjective",
    "score_loss",
    "split_flow_score",
]
