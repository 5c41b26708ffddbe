"""Training: the train state, the pure step, the scan-chunked loop, checkpoints, the main job."""

from flowjax_fm.training._checkpoint import Checkpointer, write_json_atomic
from flowjax_fm.training._experiment import TrainConfig, load_run, train_and_evaluate
from flowjax_fm.training._fit import NonFiniteLossError, batch_source, fit, run_scan_chunks
from flowjax_fm.training._images import (
    ImageTrainConfig,
    fit_labelled,
    label_dropout,
    make_conditional_train_step,
    sample_images,
    train_images,
)
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
    init_state,
    make_train_step,
    make_vector_field,
    split_model,
)

__all__ = [
    "Checkpointer",
    "ImageTrainConfig",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainState",
    "TrainStep",
    "data_mesh",
    "initialize_distributed",
    "pmap_step",
    "replicate",
    "run_scan_chunks",
    "sample_images",
    "shard_step",
    "batch_source",
    "fit",
    "fit_labelled",
    "init_state",
    "load_run",
    "label_dropout",
    "make_conditional_train_step",
    "make_optimizer",
    "make_train_step",
    "make_vector_field",
    "split_model",
    "train_and_evaluate",
    "train_images",
    "write_json_atomic",
]
