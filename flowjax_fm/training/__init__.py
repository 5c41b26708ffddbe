"""Training: the train state, the pure step (a pytree), the one scan-chunked loop, checkpoints.

The jobs built on it (configs, run directories, the point and image pipelines) are
:mod:`flowjax_fm.experiments`. Models come in three kinds, all handled by one adapter
(:func:`as_model`): a Flax NNX module, an equinox module, or a plain
``apply(params, x, t, cond=None)`` with a params pytree.
"""

from flowjax_fm.training._checkpoint import (
    CheckpointDamagedError,
    Checkpointer,
    load_params,
    save_params,
    write_json_atomic,
)
from flowjax_fm.training._data import Batch, BatchPlan
from flowjax_fm.training._fit import NonFiniteLossError, RuntimeCheckError, fit
from flowjax_fm.training._images import fit_labelled, label_dropout
from flowjax_fm.training._model import ModelApply, as_model
from flowjax_fm.training._optim import make_optimizer
from flowjax_fm.training._parallel import (
    data_mesh,
    initialize_distributed,
    pmap_step,
    replicate,
    shard_step,
)
from flowjax_fm.training._step import (
    TrainState,
    TrainStep,
    drop_condition,
    init_state,
    make_conditional_train_step,
    make_train_step,
    make_vector_field,
    split_model,
)

__all__ = [
    "Batch",
    "CheckpointDamagedError",
    "BatchPlan",
    "Checkpointer",
    "ModelApply",
    "NonFiniteLossError",
    "RuntimeCheckError",
    "TrainState",
    "TrainStep",
    "as_model",
    "data_mesh",
    "drop_condition",
    "fit",
    "fit_labelled",
    "init_state",
    "initialize_distributed",
    "label_dropout",
    "load_params",
    "make_conditional_train_step",
    "make_optimizer",
    "make_train_step",
    "make_vector_field",
    "pmap_step",
    "replicate",
    "save_params",
    "shard_step",
    "split_model",
    "write_json_atomic",
]
