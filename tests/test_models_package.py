"""kdmed.models as a package: every old import path works, one ImageNet table, no download code."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdmed import models
from kdmed.models import ARCHS, IMAGENET_ARCHS, imagenet_weights_file


def test_models_package_has_no_download_calls():
    files = sorted(Path(models.__file__).parent.glob("*.py"))
    assert len(files) > 1
    for file in files:
        source = file.read_text()
        assert "load_state_dict_from_url" not in source and "get_state_dict" not in source, file.name


# ----------------------------------------------------------------------------- package layout

#: every public name of the former single-file kdmed/models.py, importable from kdmed.models
OLD_PUBLIC_NAMES = (
    "ARCHS", "SmallCNN", "unwrap", "model_arch", "imagenet_weights_file", "build_model", "default_taps",
    "FeatureTaps", "freeze_through", "frozen_modules", "set_train_mode", "head_parameters", "count_parameters",
    "read_checkpoint", "checkpoint_num_classes", "load_weights", "save_model", "load_model",
)


def test_old_import_paths_still_work():
    for name in OLD_PUBLIC_NAMES:
        assert getattr(models, name) is not None, name
    assert set(OLD_PUBLIC_NAMES) | {"IMAGENET_ARCHS"} == set(models.__all__)


def test_imagenet_archs_are_those_with_weights():
    assert IMAGENET_ARCHS == ("densenet121", "resnet18")
    for arch in ARCHS:
        if arch in IMAGENET_ARCHS:
            path, url = imagenet_weights_file(arch)
            assert path.name == url.rsplit("/", 1)[1]
        else:
            with pytest.raises(ValueError, match="exist only for densenet121, resnet18"):
                imagenet_weights_file(arch)
