"""Golden values of kdmed.models: a refactor must not change a single bit.

The hashes were computed with the code before ``kdmed/models.py`` became a package.
They pin

* the initial weights ``torch.manual_seed(s); build_model(arch, k)`` (every tensor,
  in state_dict order) and the module tree (names and classes, in construction
  order): they do not depend on the CPU's instruction set or the thread count;
* the logits of each architecture on a fixed seeded input: hard-coded values to
  float32 rounding everywhere, and bitwise (sha256) in the pinned reproducible
  numerics (AVX2 kernels, one thread), where they are repeatable;
* the checkpoint layout (``kdmed-model-v1``) and the weights that ``build_model``
  gives when initialised from a checkpoint or an ImageNet file.

Recompute (only for an intended change) with ``python tests/test_models_golden.py``.
"""

from __future__ import annotations

import hashlib

import kdmed  # noqa: F401  (pins the numerics before torch creates kernels)
import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from kdmed.models import ARCHS, build_model, load_model, read_checkpoint, save_model
from kdmed.numerics import compute_record

#: (arch, num_classes) -> sha256 of the seed-0 state_dict
STATE_SHA = {
    ("densenet121", 5): "b583dec1f555e01dfd2352d3007bf14dc74a34ca0c1f80378679ced4b374cea9",
    ("resnet18", 5): "99469d7596bef059f01589cd82b88d446b571a0db824037865667ea7f14d2d65",
    ("small_densenet", 5): "1ce13f0b19c14074f17d0dbdd7db7e9411563f67ec56e04bd7c3c19b32c30477",
    ("small_cnn", 5): "8a9c37eeafdec2446265c137632077bf9a421940927db1d55310bf1be142762d",
    ("densenet121", 14): "a76c0af6c23e7c8973d94c35996d8f497b7c12778641171d0530dc00ac2913f9",
    ("resnet18", 7): "5539a9037096be4079321f21fc375493494fd7c04ac9323a6d33982ce0bd0d80",
    ("small_densenet", 3): "da02851f492838ecf7f1eb0cf82e5f5d15d66464f340506a1a8a4ceda5c929d1",
    ("small_cnn", 3): "d3fb696b8ec5bac6ec1494c45d7955614efdccd23ebbe2e3f77fc4446dbbf199",
}

#: arch -> sha256 of the module tree (name and class of every submodule, in order)
TREE_SHA = {
    "densenet121": "5d95122a1e2a98ff39d1d92889ba9b57ce72ce83aed6430286940e72aa22e407",
    "resnet18": "0ac814399c920414a9451cb0d71a39396228c013e01a4bd3b23a32f47b2d7532",
    "small_densenet": "4b032fa0631c7a9ddf515bd43d81155348f36be50e9fa0fb728e97a12765ed88",
    "small_cnn": "696b73a94ff2c39df9ffda718ea9e4750d62060c284ff3cd9601e206bfd0e161",
}

#: arch -> logits [2, 5] of the seed-0 model (eval) on ``torch.manual_seed(1); torch.rand(2, 3, 64, 64)``
LOGITS = {
    "densenet121": [
        [-0.11984732747077942, -0.09000864624977112, 0.3693181276321411, 0.18867802619934082, 0.517074465751648],
        [-0.12265223264694214, -0.08737431466579437, 0.3798793852329254, 0.19950225949287415, 0.523364245891571],
    ],
    "resnet18": [
        [0.1849718540906906, 0.15522924065589905, 0.013546131551265717, 0.21467572450637817, 0.36810770630836487],
        [0.1833314597606659, 0.13580214977264404, 0.01381160132586956, 0.15208250284194946, 0.3992725610733032],
    ],
    "small_densenet": [
        [-0.8949675559997559, 0.049080610275268555, -1.485673189163208, -0.8979333639144897, -0.6500819325447083],
        [-0.8969367742538452, 0.050590574741363525, -1.4856945276260376, -0.8944417238235474, -0.6650550365447998],
    ],
    "small_cnn": [
        [-0.0040148161351680756, -0.09511629492044449, -0.0327577218413353, 0.04111924022436142, -0.08385623246431351],
        [-0.012185506522655487, -0.09287797659635544, -0.027157001197338104, 0.03202678635716438, -0.07911428809165955],
    ],
}

#: CPU model -> arch -> sha256 of those logits' float32 bytes under AVX2 kernels and one thread.
#: The bits are the same on every machine of one CPU model, not across models (an Intel Xeon
#: and an AMD EPYC differ in the last bits; the values above hold on both within tolerance).
LOGITS_SHA_AVX2_1T = {
    "Intel(R) Xeon(R) Processor": {
        "densenet121": "67289d6646b67c7a4b937bd81f21737629509eb9a3521bfe1896e2ec712064d0",
        "resnet18": "bfcf508444bacd874d64a23fb62a7a43828548de8bff778bbc77b63908add6ae",
        "small_densenet": "04a9c17b5aeeb37e819348560a5074b5543da559b8e569faa5e92b7c4b2cf172",
        "small_cnn": "1d8dee50317b4e2b7673fefdaf5ec13b6e4d6c685c175c96424e8fccb39f83fc",
    },
    "AMD EPYC": {
        "densenet121": "cca6dee40bb2d1b8a02598ad6f13f867905c45e1b5bac3ccb807a1cbb7e4c36a",
        "resnet18": "9f8f8a4ef3f1d56baf32d09d0e50cea0eca547449412226317b22f659dc1a01a",
        "small_densenet": "6a496c9164522bd02f842e714848f5d132c700621d5d8329fdde092b027e5550",
        "small_cnn": "8945501ba6e2d582f69c6a40de1b003ac6f51cc14cbfe625b75133e4ce267e8b",
    },
}

#: weights of models initialised from files. reinit: seed 3, small_cnn with 3 classes from a
#: 5-class small_cnn checkpoint; match: seed 3, 5 classes from the same checkpoint (head kept);
#: imagenet: seed 4, resnet18 with 3 classes from a (fake) torchvision ImageNet file
FROM_CHECKPOINT_SHA = {
    "reinit": "621aee24997b8c2e63335f777cec0ab90838e851157545df92b4c5cfd5d9b5e8",
    "match": "f51413fed2b0413be2c8d3534b8a7899767bce5cb67bebd3fa1b88f2c170c28e",
    "imagenet": "58431551f7440c9efdffb7b6dc1e9c8df0c6cf3b83d658c7d7d13245b6c32fb4",
}

CHECKPOINT_KEYS = ["format", "model", "arch", "num_classes", "classes", "epoch", "auc", "note"]


def state_sha(model: torch.nn.Module) -> str:
    """sha256 over every (name, dtype, shape, bytes) of the state_dict, in order."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def tree_sha(model: torch.nn.Module) -> str:
    rows = (f"{name}:{type(m).__module__.split('.')[0]}.{type(m).__name__}" for name, m in model.named_modules())
    text = "\n".join(rows)
    return hashlib.sha256(text.encode()).hexdigest()


def seeded(arch: str, k: int, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, k, **kwargs)


def golden_input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64)


def logits_of(arch: str) -> torch.Tensor:
    model = seeded(arch, 5).eval()
    with torch.no_grad():
        return model(golden_input())


def _checkpoint(tmp_path):
    path = tmp_path / "teacher.pt"
    save_model(seeded("small_cnn", 5, seed=2), path, "small_cnn", list("abcde"),
               extra={"epoch": np.int64(3), "auc": np.float32(0.75), "note": ("x", 1)})
    return path


def _fake_imagenet_file(tmp_path):
    torch.manual_seed(9)
    path = tmp_path / "resnet18-fake.pth"
    torch.save(resnet18().state_dict(), path)
    return path


@pytest.mark.parametrize("arch,k", list(STATE_SHA))
def test_initial_weights_are_bitwise_unchanged(arch, k):
    assert state_sha(seeded(arch, k)) == STATE_SHA[arch, k]


@pytest.mark.parametrize("arch", ARCHS)
def test_module_tree_is_unchanged(arch):
    assert tree_sha(seeded(arch, 5)) == TREE_SHA[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_are_unchanged(arch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logits = logits_of(arch)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(logits, torch.tensor(LOGITS[arch]), rtol=1e-5, atol=1e-6)
    known = LOGITS_SHA_AVX2_1T.get(compute_record()["cpu"])
    if torch.backends.cpu.get_cpu_capability() == "AVX2" and known:  # bitwise only on a CPU model on record
        assert hashlib.sha256(logits.numpy().tobytes()).hexdigest() == known[arch]


def test_checkpoint_layout_is_unchanged(tmp_path):
    path = _checkpoint(tmp_path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == CHECKPOINT_KEYS
    assert raw["format"] == "kdmed-model-v1"
    assert (raw["arch"], raw["num_classes"], raw["classes"]) == ("small_cnn", 5, list("abcde"))
    extra = (type(raw["epoch"]), raw["epoch"], type(raw["auc"]), raw["auc"], raw["note"])
    assert extra == (int, 3, float, 0.75, ["x", 1])
    assert list(raw["model"]) == list(seeded("small_cnn", 5).state_dict())
    model, meta = load_model(path)
    assert state_sha(model) == state_sha(seeded("small_cnn", 5, seed=2))
    assert meta == {k: v for k, v in raw.items() if k != "model"}
    assert list(read_checkpoint(path)) == CHECKPOINT_KEYS


def test_init_from_checkpoint_and_imagenet_file_is_unchanged(tmp_path):
    path = _checkpoint(tmp_path)
    assert state_sha(seeded("small_cnn", 3, seed=3, init=path)) == FROM_CHECKPOINT_SHA["reinit"]
    assert state_sha(seeded("small_cnn", 5, seed=3, init=path)) == FROM_CHECKPOINT_SHA["match"]
    weights = _fake_imagenet_file(tmp_path)
    model = seeded("resnet18", 3, seed=4, init="imagenet", weights_path=weights)
    assert state_sha(model) == FROM_CHECKPOINT_SHA["imagenet"]


if __name__ == "__main__":  # print the current values, to paste above after an intended change
    import tempfile
    from pathlib import Path

    torch.set_num_threads(1)
    print("capability", torch.backends.cpu.get_cpu_capability(), "threads", torch.get_num_threads())
    print("STATE_SHA = {")
    for arch, k in STATE_SHA:
        print(f"    ({arch!r}, {k}): {state_sha(seeded(arch, k))!r},")
    print("}\nTREE_SHA = {")
    for arch in ARCHS:
        print(f"    {arch!r}: {tree_sha(seeded(arch, 5))!r},")
    print("}\nLOGITS = {")
    shas = {}
    for arch in ARCHS:
        logits = logits_of(arch)
        shas[arch] = hashlib.sha256(logits.numpy().tobytes()).hexdigest()
        rows = ",\n        ".join(repr([float(v) for v in row]) for row in logits.tolist())
        print(f"    {arch!r}: [\n        {rows},\n    ],")
    print(f"}}\nLOGITS_SHA_AVX2_1T[{compute_record()['cpu']!r}] = {{")
    for arch in ARCHS:
        print(f"    {arch!r}: {shas[arch]!r},")
    with tempfile.TemporaryDirectory() as tmp:
        path = _checkpoint(Path(tmp))
        weights = _fake_imagenet_file(Path(tmp))
        print("}\nFROM_CHECKPOINT_SHA = {")
        print(f"    'reinit': {state_sha(seeded('small_cnn', 3, seed=3, init=path))!r},")
        print(f"    'match': {state_sha(seeded('small_cnn', 5, seed=3, init=path))!r},")
        model = seeded("resnet18", 3, seed=4, init="imagenet", weights_path=weights)
        print(f"    'imagenet': {state_sha(model)!r},\n}}")
