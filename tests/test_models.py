"""Tests for kdmed.models: shapes, feature taps, freezing, checkpoints, ImageNet weights."""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
from torchvision.models import densenet121, resnet18

from kdmed.models import (
    ARCHS,
    FeatureTaps,
    build_model,
    count_parameters,
    default_taps,
    freeze_through,
    frozen_modules,
    head_parameters,
    load_model,
    load_weights,
    save_model,
    set_train_mode,
)

SMALL = ("resnet18", "small_densenet", "small_cnn")


def _model(arch, k, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, k)


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_at_64px_and_32px(arch):
    model = _model(arch, 5).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 5)
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 5)


def test_num_classes_validated_and_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch 'vgg'.*densenet121, resnet18"):
        build_model("vgg", 3)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small_cnn", 0)
    assert build_model("small_cnn", 1)(torch.rand(2, 3, 40, 48)).shape == (2, 1)


def test_random_init_is_reproducible():
    a, b = _model("small_densenet", 3, seed=7), _model("small_densenet", 3, seed=7)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_default_taps():
    assert default_taps("densenet121") == ["denseblock1", "denseblock2", "denseblock3", "denseblock4"]
    assert default_taps("small_densenet") == default_taps("densenet121")
    assert default_taps("resnet18") == ["layer1", "layer2", "layer3", "layer4"]
    assert default_taps("small_cnn") == ["block1", "block2", "block3", "block4"]


@pytest.mark.parametrize(
    "arch,channels",
    [("resnet18", (64, 128, 256, 512)), ("small_densenet", (48, 48, 48, 48)), ("small_cnn", (16, 32, 64, 128))],
)
def test_tap_shapes_at_64px(arch, channels):
    model = _model(arch, 3).eval()
    with FeatureTaps(model, arch, default_taps(arch)) as taps, torch.no_grad():
        logits, feats = taps(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 3)
    assert list(feats) == default_taps(arch)
    # every arch taps at strides 4, 8, 16, 32
    assert [tuple(f.shape) for f in feats.values()] == [(2, c, s, s) for c, s in zip(channels, (16, 8, 4, 2))]


def test_densenet121_taps_at_224px():
    model = _model("densenet121", 14).eval()
    with FeatureTaps(model, "densenet121", ["denseblock3", "denseblock4"]) as taps, torch.no_grad():
        logits, feats = taps(torch.rand(1, 3, 224, 224))
    assert logits.shape == (1, 14)
    assert feats["denseblock3"].shape == (1, 1024, 14, 14)
    assert feats["denseblock4"].shape == (1, 1024, 7, 7)


def test_taps_equal_a_manual_forward_and_keep_the_graph():
    model = _model("resnet18", 4).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        expected = {}
        for name in ("layer1", "layer2", "layer3", "layer4"):
            h = getattr(model, name)(h)
            expected[name] = h
        expected_logits = model.fc(torch.flatten(model.avgpool(h), 1))
    taps = FeatureTaps(model, "resnet18", ["layer2", "layer4"])
    logits, feats = taps(x)
    taps.close()
    assert list(feats) == ["layer2", "layer4"]
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(feats["layer2"], expected["layer2"])
    torch.testing.assert_close(feats["layer4"], expected["layer4"])
    # an attention-style loss on a tap reaches the parameters before it
    feats["layer2"].pow(2).mean().backward()
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.layer4[0].conv1.weight.grad is None


def test_feature_taps_close_leaves_model_unchanged():
    model = _model("small_cnn", 3).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with FeatureTaps(model, "small_cnn", None) as taps:
        assert sum(len(m._forward_hooks) for m in model.modules()) == 4
        with torch.no_grad():
            logits, _ = taps(x)
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, logits) and torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="closed"):
        taps(x)
    taps.close()  # idempotent


def test_feature_taps_bad_tap_and_arch():
    model = _model("small_cnn", 3)
    with pytest.raises(ValueError, match=r"unknown tap\(s\) \['layer1'\].*block1, block2, block3, block4"):
        FeatureTaps(model, "small_cnn", ["layer1"])
    with pytest.raises(ValueError, match="built as 'small_cnn'"):
        FeatureTaps(model, "resnet18", ["layer1"])


def _params_under(model, prefixes):
    return {n for n, _ in model.named_parameters() if any(n == p or n.startswith(p + ".") for p in prefixes)}


@pytest.mark.parametrize(
    "arch,block,prefixes",
    [
        ("resnet18", "stem", ["conv1", "bn1"]),
        ("resnet18", "layer2", ["conv1", "bn1", "layer1", "layer2"]),
        (
            "densenet121",
            "denseblock3",
            [
                "features.conv0",
                "features.norm0",
                "features.denseblock1",
                "features.transition1",
                "features.denseblock2",
                "features.transition2",
                "features.denseblock3",
            ],
        ),
        ("small_densenet", "denseblock1", ["features.conv0", "features.norm0", "features.denseblock1"]),
        ("small_cnn", "block3", ["block1", "block2", "block3"]),
    ],
)
def test_freeze_through_freezes_exactly_the_named_layers(arch, block, prefixes):
    model = _model(arch, 3)
    frozen = freeze_through(model, arch, block)
    expected = _params_under(model, prefixes)
    assert set(frozen) == expected and len(frozen) == len(expected) > 0
    for name, p in model.named_parameters():
        assert p.requires_grad == (name not in expected), name
    assert count_parameters(model, trainable_only=True) == sum(
        p.numel() for n, p in model.named_parameters() if n not in expected
    )


def test_freeze_errors_and_refreeze():
    model = _model("small_cnn", 3)
    with pytest.raises(ValueError, match="unknown block 'stem' for small_cnn; valid blocks: block1, block2"):
        freeze_through(model, "small_cnn", "stem")
    freeze_through(model, "small_cnn", "block4")
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("fc."))
    freeze_through(model, "small_cnn", "block1")  # a shallower freeze unfreezes the later blocks
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == [
        "block1.conv.weight",
        "block1.norm.weight",
        "block1.norm.bias",
    ]


def test_frozen_batchnorm_stays_in_eval_and_frozen_weights_do_not_move():
    model = _model("resnet18", 2)
    freeze_through(model, "resnet18", "layer1")
    assert [n for n, _ in frozen_modules(model)] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    set_train_mode(model)
    assert model.training and not model.bn1.training and not model.layer1[0].bn1.training
    assert model.layer2[0].bn1.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = nn.functional.binary_cross_entropy_with_logits(model(torch.rand(4, 3, 32, 32)), torch.ones(4, 2))
    loss.backward()
    opt.step()
    after = model.state_dict()
    for key in before:
        moved = not torch.equal(before[key], after[key])
        if key.startswith(("conv1.", "bn1.", "layer1.")):
            assert not moved, key  # weights and BN running statistics
        elif key in ("layer2.0.bn1.running_mean", "fc.weight", "layer4.1.conv2.weight"):
            assert moved, key


def test_head_parameters_and_count_parameters():
    for arch, head in (("resnet18", "fc"), ("densenet121", "classifier"), ("small_cnn", "fc")):
        model = _model(arch, 7)
        params = head_parameters(model, arch)
        module = getattr(model, head)
        assert [id(p) for p in params] == [id(module.weight), id(module.bias)]
        assert module.weight.shape[0] == 7
    tv = resnet18(num_classes=7)
    assert count_parameters(_model("resnet18", 7)) == sum(p.numel() for p in tv.parameters())


# ----------------------------------------------------------------------------- checkpoints


def test_save_load_roundtrip_same_outputs(tmp_path):
    model = _model("small_densenet", 3, seed=1).eval()
    path = tmp_path / "ck" / "m.pt"
    save_model(model, path, "small_densenet", ["a", "b", "c"], extra={"epoch": 4, "auc": np.float32(0.5)})
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == "small_densenet" and raw["num_classes"] == 3 and raw["classes"] == ["a", "b", "c"]
    assert raw["epoch"] == 4 and raw["auc"] == pytest.approx(0.5)

    other = _model("small_densenet", 3, seed=2).eval()
    info = load_weights(other, path)
    assert info == {"loaded": len(model.state_dict()), "skipped": []}
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), other(x))

    rebuilt, meta = load_model(path)
    assert meta["classes"] == ["a", "b", "c"] and not rebuilt.training
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_save_model_validates(tmp_path):
    model = _model("small_cnn", 3)
    with pytest.raises(ValueError, match="2 class names given but the model's head has 3 outputs"):
        save_model(model, tmp_path / "m.pt", "small_cnn", ["a", "b"])
    with pytest.raises(ValueError, match=r"reserved key\(s\) \['classes'\]"):
        save_model(model, tmp_path / "m.pt", "small_cnn", ["a", "b", "c"], extra={"classes": []})
    assert not any(tmp_path.iterdir())


def test_load_bare_state_dict_and_ddp_prefixes(tmp_path):
    model = _model("small_cnn", 2, seed=3)
    path = tmp_path / "bare.pt"
    torch.save(OrderedDict(("module." + k, v) for k, v in model.state_dict().items()), path)
    other = _model("small_cnn", 2, seed=4)
    assert load_weights(other, path)["loaded"] == len(model.state_dict())
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())


def test_match_rejects_other_class_count_naming_both(tmp_path):
    path = tmp_path / "fundus5.pt"
    save_model(_model("small_cnn", 5), path, "small_cnn", list("abcde"))
    target = _model("small_cnn", 14)
    with pytest.raises(ValueError, match=rf"{path}.* head for 5 classes but the model has 14 classes"):
        load_weights(target, path, head="match")


def test_reinit_loads_backbone_and_keeps_fresh_head(tmp_path):
    source = _model("resnet18", 5, seed=5)
    path = tmp_path / "src.pt"
    save_model(source, path, "resnet18", list("abcde"))
    target = _model("resnet18", 14, seed=6)
    fresh_head = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("fc.")}
    info = load_weights(target, path, head="reinit")
    assert sorted(info["skipped"]) == ["fc.bias", "fc.weight"]
    assert info["loaded"] == len(source.state_dict()) - 2
    for key, value in target.state_dict().items():
        if key.startswith("fc."):
            assert torch.equal(value, fresh_head[key])
        else:
            assert torch.equal(value, source.state_dict()[key]), key


def test_build_model_from_checkpoint_auto_head(tmp_path):
    source = _model("small_cnn", 5, seed=8)
    path = tmp_path / "t.pt"
    save_model(source, path, "small_cnn", list("abcde"))
    same = build_model("small_cnn", 5, init=path)  # a teacher reloaded whole, head included
    assert torch.equal(same.fc.weight, source.fc.weight)
    torch.manual_seed(0)
    other = build_model("small_cnn", 3, init=str(path))  # another label space: fresh head
    assert other.fc.weight.shape == (3, 128)
    assert torch.equal(other.block2.conv.weight, source.block2.conv.weight)
    with pytest.raises(ValueError, match="head for 5 classes but the model has 3"):
        build_model("small_cnn", 3, init=path, head="match")
    with pytest.raises(ValueError, match="holds a 'small_cnn' model, not a 'resnet18' model"):
        build_model("resnet18", 5, init=path)
    with pytest.raises(FileNotFoundError, match="init='imagnet' is neither 'random', 'imagenet' nor"):
        build_model("small_cnn", 5, init="imagnet")


def test_state_dict_of_wrong_arch_is_refused(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(_model("small_densenet", 2).state_dict(), path)
    with pytest.raises(ValueError, match=rf"{path} does not fit a 'small_cnn' model: \d+ missing tensor"):
        load_weights(_model("small_cnn", 2), path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_not_a_checkpoint_errors(tmp_path):
    model = _model("small_cnn", 2)
    text = tmp_path / "notes.pt"
    text.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(ValueError, match=rf"{text} is not a kdmed/torch checkpoint"):
        load_weights(model, text)

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(ValueError, match=rf"{evil} is not a kdmed/torch checkpoint"):
        load_weights(model, evil)

    numbers = tmp_path / "list.pt"
    torch.save([1, 2, 3], numbers)
    with pytest.raises(ValueError, match=rf"{numbers} is not a kdmed/torch checkpoint: expected a state_dict"):
        load_weights(model, numbers)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_weights(model, tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- ImageNet weights


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty TORCH_HOME, and any download attempt fails the test."""

    def refuse(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_imagenet_missing_file_fails_fast_naming_it(no_network):
    expected = no_network / "densenet121-a639ec97.pth"
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        build_model("densenet121", 14, init="imagenet")
    assert time.perf_counter() - start < 2.0
    message = str(err.value)
    assert str(expected) in message
    assert "https://download.pytorch.org/models/densenet121-a639ec97.pth" in message
    with pytest.raises(FileNotFoundError, match="elsewhere.pth"):
        build_model("resnet18", 2, init="imagenet", weights_path=no_network / "elsewhere.pth")


def test_imagenet_not_available_for_small_archs(no_network):
    for arch in ("small_cnn", "small_densenet"):
        with pytest.raises(ValueError, match=f"ImageNet weights do not exist for '{arch}'"):
            build_model(arch, 2, init="imagenet")


def test_imagenet_fake_resnet18_file_loads(no_network):
    torch.manual_seed(11)
    reference = resnet18()  # 1000 ImageNet classes
    no_network.mkdir(parents=True)
    torch.save(reference.state_dict(), no_network / "resnet18-f37072fd.pth")
    model = build_model("resnet18", 3, init="imagenet")
    assert model.fc.out_features == 3
    ref = reference.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, ref[key]), key


def test_imagenet_fake_densenet121_with_old_style_keys_loads(no_network):
    torch.manual_seed(12)
    reference = densenet121()
    ref = reference.state_dict()
    old_style = OrderedDict()
    for key, value in ref.items():
        if key.endswith("num_batches_tracked"):
            continue  # the published file predates these counters
        # torchvision's published file says "norm.1" where the module says "norm1"
        for part in ("norm1", "norm2", "conv1", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        old_style[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    no_network.mkdir(parents=True)
    path = no_network / "dn121.pth"
    torch.save(old_style, path)
    model = build_model("densenet121", 14, init="imagenet", weights_path=path)
    assert model.classifier.weight.shape == (14, 1024)
    for key, value in model.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(value, ref[key]), key
