"""Networks used as teachers and students, with feature taps, freezing and checkpoints.

One job per module; import everything from here (``from kdmed.models import ...``):

* :mod:`~kdmed.models.archs`: the four architectures (``densenet121``, ``resnet18``,
  ``small_densenet``, ``small_cnn``), their head names, :func:`unwrap`, :func:`model_arch`;
* :mod:`~kdmed.models.build`: :func:`build_model` (random, ImageNet or checkpoint
  initialisation) and the local ImageNet weight files (:data:`IMAGENET_ARCHS`);
* :mod:`~kdmed.models.taps`: feature taps, freezing, train mode, head parameters;
* :mod:`~kdmed.models.checkpoint`: :func:`save_model` / :func:`load_model`
  (format ``kdmed-model-v1``), :func:`read_checkpoint`, :func:`load_weights`.
"""

from .archs import ARCHS, SmallCNN, model_arch, unwrap
from .build import IMAGENET_ARCHS, build_model, imagenet_weights_file
from .checkpoint import checkpoint_num_classes, load_model, load_weights, read_checkpoint, save_model
from .taps import (
    FeatureTaps,
    count_parameters,
    default_taps,
    freeze_through,
    frozen_modules,
    head_parameters,
    set_train_mode,
)

__all__ = [
    "ARCHS",
    "IMAGENET_ARCHS",
    "FeatureTaps",
    "SmallCNN",
    "build_model",
    "checkpoint_num_classes",
    "count_parameters",
    "default_taps",
    "freeze_through",
    "frozen_modules",
    "head_parameters",
    "imagenet_weights_file",
    "load_model",
    "load_weights",
    "model_arch",
    "read_checkpoint",
    "save_model",
    "set_train_mode",
    "unwrap",
]
