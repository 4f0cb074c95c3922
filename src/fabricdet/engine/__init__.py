"""Training, evaluation and inference of a detector, independent of the model inside.

Public API:
- config: :class:`RunConfig` (:class:`DataConfig`, :class:`TrainConfig`,
  :class:`EvalConfig`, and the model's :class:`~fabricdet.models.config.ModelConfig`),
  :func:`preset` / :data:`PRESETS`, :func:`apply_overrides`, :func:`save_config`,
  :func:`load_config`;
- :func:`train` (single process or ``torchrun`` DDP, resumable);
- :func:`load_model` -> :class:`LoadedModel`; :func:`evaluate`, :func:`evaluate_all_nms`,
  :func:`predict_dataset`;
- :func:`detect`, :func:`write_detections`, :func:`draw_detections`.

A model is anything that follows torchvision's detection contract
(``model(images, targets)``: losses in train mode, detections in eval mode), optionally with an
``nms_method`` attribute and a ``set_epoch_progress(progress)`` method; it is built by
``fabricdet.models.build_model(model_config, num_classes)`` unless a factory is given.
"""

from __future__ import annotations

from fabricdet.engine.checkpoint import CheckpointError, LoadedModel, ModelFactory, load_model
from fabricdet.engine.config import (
    PRESETS,
    ConfigError,
    DataConfig,
    EvalConfig,
    RunConfig,
    TrainConfig,
    preset,
    validate,
)
from fabricdet.engine.config_io import apply_overrides, load_config, save_config
from fabricdet.engine.evaluate import evaluate, evaluate_all_nms, predict_dataset
from fabricdet.engine.predict import (
    ImageDetections,
    detect,
    draw_detections,
    write_detections,
)
from fabricdet.engine.train import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    TrainingError,
    train,
)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "MODEL_FILE",
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ImageDetections",
    "LoadedModel",
    "ModelFactory",
    "RunConfig",
    "TrainConfig",
    "TrainingError",
    "apply_overrides",
    "detect",
    "draw_detections",
    "evaluate",
    "evaluate_all_nms",
    "load_config",
    "load_model",
    "predict_dataset",
    "preset",
    "save_config",
    "train",
    "validate",
    "write_detections",
]
