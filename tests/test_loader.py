"""Tests for kdmed.loader.ArrayLoader: values, order, augmentation, DDP sharding, prefetch."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from kdmed.loader import IMAGENET_MEAN, IMAGENET_STD, ArrayLoader, affine_augment, parse_augment

MEAN = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
STD = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)


def _data(n=10, c=3, h=8, w=8, k=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    labels = rng.integers(0, 2, size=(n, k)).astype(np.float32)
    labels[1 % n, 0] = np.nan
    labels[7 % n, 1] = np.nan
    return images, labels


def _normalised(images):
    """Hand reference: float64 (x/255 - mean) / std, grey broadcast to RGB."""
    return (images.astype(np.float64) / 255.0 - MEAN) / STD


def _collect(loader):
    return [(b.x.clone(), b.y.clone(), b.index.clone()) for b in loader]


def test_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_values_shapes_dtypes_and_nan_labels():
    images, labels = _data()
    loader = ArrayLoader(images, labels, batch_size=4, shuffle=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b.index.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for b in batches:
        assert b.x.dtype == torch.float32 and b.x.shape == (len(b.index), 3, 8, 8)
        assert b.y.dtype == torch.float32 and b.index.dtype == torch.int64
        rows = b.index.numpy()
        np.testing.assert_allclose(b.x.numpy(), _normalised(images[rows]), atol=1e-5, rtol=0)
        np.testing.assert_array_equal(b.y.numpy(), labels[rows])  # NaN == NaN here
    assert torch.isnan(batches[0].y[1, 0]) and torch.isnan(batches[1].y[3, 1])
    assert batches[0].x.is_contiguous()  # channels_last only on CUDA or when asked


def test_grey_images_become_three_normalised_channels():
    images, labels = _data(n=5, c=1)
    (batch,) = list(ArrayLoader(images, labels, batch_size=5, shuffle=False))
    assert batch.x.shape == (5, 3, 8, 8)
    grey = np.repeat(images, 3, axis=1)
    np.testing.assert_allclose(batch.x.numpy(), _normalised(grey), atol=1e-5, rtol=0)
    assert not torch.equal(batch.x[:, 0], batch.x[:, 1])  # per-channel mean/std applied


def test_no_augmentation_dict_is_exactly_the_normalised_input():
    images, labels = _data()
    plain = _collect(ArrayLoader(images, labels, batch_size=3, shuffle=True, seed=4))
    zero = _collect(
        ArrayLoader(images, labels, batch_size=3, shuffle=True, seed=4, augment={"hflip": False, "rotate": 0})
    )
    for (xa, ya, ia), (xb, yb, ib) in zip(plain, zero):
        assert torch.equal(xa, xb) and torch.equal(ia, ib)


def test_same_seed_and_epoch_give_identical_batches_with_augmentation():
    images, labels = _data(n=21, h=16, w=16)
    kwargs = dict(batch_size=4, shuffle=True, seed=3, augment=True)
    a, b = ArrayLoader(images, labels, **kwargs), ArrayLoader(images, labels, **kwargs)
    a.set_epoch(2)
    b.set_epoch(2)
    first, second = _collect(a), _collect(b)
    for (xa, ya, ia), (xb, yb, ib) in zip(first, second):
        assert torch.equal(xa, xb) and torch.equal(ia, ib) and torch.equal(ya.nan_to_num(-1), yb.nan_to_num(-1))
    again = _collect(a)  # re-iterating the same epoch repeats it
    assert all(torch.equal(p[0], q[0]) for p, q in zip(first, again))
    # augmentation is really applied
    assert not torch.allclose(first[0][0], torch.from_numpy(_normalised(images[first[0][2].numpy()])).float())


def test_epoch_and_seed_change_the_order():
    images, labels = _data(n=30)
    def order(loader):
        return torch.cat([b.index for b in loader]).tolist()

    loader = ArrayLoader(images, labels, batch_size=5, shuffle=True, seed=0)
    order0 = order(loader)
    loader.set_epoch(1)
    order1 = order(loader)
    seed1 = order(ArrayLoader(images, labels, batch_size=5, shuffle=True, seed=1))
    assert sorted(order0) == sorted(order1) == sorted(seed1) == list(range(30))
    assert order0 != order1 and order0 != seed1 and order1 != seed1
    # batches are the epoch's consecutive rows, each batch sorted (sequential memmap reads)
    rows = loader.epoch_rows()
    assert order1 == np.concatenate([np.sort(rows[i : i + 5]) for i in range(0, 30, 5)]).tolist()
    unshuffled = ArrayLoader(images, labels, batch_size=30, shuffle=False)
    unshuffled.set_epoch(5)
    assert unshuffled.epoch_rows().tolist() == list(range(30))


def test_every_row_once_per_epoch_and_drop_last():
    images, labels = _data(n=23)
    loader = ArrayLoader(images, labels, batch_size=5, shuffle=True, seed=9)
    seen = np.concatenate([b.index.numpy() for b in loader])
    assert len(loader) == 5 and np.array_equal(np.sort(seen), np.arange(23))
    dropped = ArrayLoader(images, labels, batch_size=5, shuffle=True, seed=9, drop_last=True)
    sizes = [len(b.index) for b in dropped]
    assert len(dropped) == 4 and sizes == [5, 5, 5, 5]
    rows = np.concatenate([b.index.numpy() for b in dropped])
    assert len(set(rows.tolist())) == 20


def test_indices_restrict_rows_and_index_is_the_image_row():
    images, labels = _data(n=12)
    subset = np.array([11, 2, 5, 7])
    loader = ArrayLoader(images, labels, batch_size=3, shuffle=True, seed=1, indices=subset)
    batches = list(loader)
    assert len(loader) == 2
    seen = np.concatenate([b.index.numpy() for b in batches])
    assert sorted(seen.tolist()) == [2, 5, 7, 11]
    for b in batches:
        np.testing.assert_allclose(b.x.numpy(), _normalised(images[b.index.numpy()]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n,world", [(20, 4), (22, 4), (5, 2)])
def test_ddp_shards_are_disjoint_equal_and_covering(n, world):
    images, labels = _data(n=n)
    shards = []
    for rank in range(world):
        loader = ArrayLoader(images, labels, batch_size=2, shuffle=True, seed=5, rank=rank, world_size=world)
        loader.set_epoch(3)
        rows = np.concatenate([b.index.numpy() for b in loader])
        assert len(loader) == math.ceil(math.ceil(n / world) / 2)
        shards.append(rows)
    per_rank = math.ceil(n / world)
    assert all(len(s) == per_rank for s in shards)
    everything = np.concatenate(shards)
    assert set(everything.tolist()) == set(range(n))
    # only the padding repeats rows, and it repeats the head of the epoch permutation
    values, counts = np.unique(everything, return_counts=True)
    assert counts.sum() - len(values) == per_rank * world - n
    if n % world == 0:
        for i in range(world):
            for j in range(i + 1, world):
                assert not set(shards[i]) & set(shards[j])
    single = ArrayLoader(images, labels, batch_size=n, shuffle=True, seed=5)
    single.set_epoch(3)
    perm = single.epoch_rows()
    padded = np.resize(perm, per_rank * world)
    for rank in range(world):
        assert np.array_equal(np.sort(shards[rank]), np.sort(padded[rank::world]))


def test_affine_augment_identity_flip_and_rotation():
    x = torch.rand(2, 3, 6, 6)
    none = torch.zeros(2, dtype=torch.bool)
    torch.testing.assert_close(affine_augment(x, torch.zeros(2), none), x, atol=1e-5, rtol=0)
    flipped = affine_augment(x, torch.zeros(2), torch.tensor([True, False]))
    torch.testing.assert_close(flipped, torch.stack([x[0].flip(2), x[1]]), atol=1e-5, rtol=0)
    # +90 degrees is counter-clockwise, like torchvision's rotate
    turned = affine_augment(x, torch.full((2,), 90.0), none)
    torch.testing.assert_close(turned, torch.rot90(x, 1, [2, 3]), atol=1e-5, rtol=0)
    out = affine_augment(torch.ones(1, 1, 9, 13), torch.tensor([15.0]), torch.tensor([True]))
    assert out.shape == (1, 1, 9, 13)
    assert out[0, 0, 4, 6] == pytest.approx(1.0, abs=1e-5)  # centre kept
    assert out[0, 0, 0, 0] < 0.5  # an uncovered corner turns black


def _blob_angles(loader, centre):
    angles = []
    for b in loader:
        raw = b.x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        weight = raw[:, 0].clamp(min=0)
        ys, xs = torch.meshgrid(torch.arange(weight.shape[1]), torch.arange(weight.shape[2]), indexing="ij")
        total = weight.sum((1, 2))
        cy = (weight * ys).sum((1, 2)) / total - centre
        cx = (weight * xs).sum((1, 2)) / total - centre
        angles.append(torch.rad2deg(torch.atan2(-cy, cx)))  # image rows grow downwards
    return torch.cat(angles)


def test_loader_rotation_stays_within_the_range_and_flips_mirror():
    n, size, centre = 40, 33, 16
    images = np.zeros((n, 1, size, size), dtype=np.uint8)
    images[:, :, centre - 1 : centre + 2, centre + 10 : centre + 13] = 255  # a blob 11 px right of centre
    labels = np.zeros((n, 1), dtype=np.float32)
    rotated = _blob_angles(
        ArrayLoader(images, labels, batch_size=16, shuffle=False, augment={"rotate": 15}), centre
    )
    assert rotated.abs().max() <= 15.5 and rotated.std() > 4  # spread over the range
    assert (rotated > 5).any() and (rotated < -5).any()
    flipped = _blob_angles(ArrayLoader(images, labels, batch_size=16, shuffle=False, augment={"hflip": True}), centre)
    mirrored = flipped.abs() > 179
    assert (flipped[~mirrored].abs() < 1e-3).all()
    assert 8 <= mirrored.sum() <= 32  # about half, for this seed


def test_parse_augment():
    assert parse_augment(True) == {"hflip": True, "rotate": 15.0}
    assert parse_augment(False) == {"hflip": False, "rotate": 0.0}
    assert parse_augment({"rotate": 10}) == {"hflip": False, "rotate": 10.0}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['scale'\]"):
        parse_augment({"scale": 2})
    with pytest.raises(ValueError, match=r"augment\['rotate'\] must be a number of degrees"):
        parse_augment({"rotate": -3})


def test_channels_last_on_request_same_values():
    images, labels = _data()
    a = next(iter(ArrayLoader(images, labels, batch_size=4, shuffle=False, channels_last=True)))
    b = next(iter(ArrayLoader(images, labels, batch_size=4, shuffle=False)))
    assert a.x.is_contiguous(memory_format=torch.channels_last) and b.x.is_contiguous()
    assert torch.equal(a.x, b.x)


def test_memmap_input(tmp_path):
    images, labels = _data(n=9)
    mm = np.lib.format.open_memmap(tmp_path / "img.npy", mode="w+", dtype=np.uint8, shape=images.shape)
    mm[:] = images
    mm.flush()
    ro = np.load(tmp_path / "img.npy", mmap_mode="r", allow_pickle=False)
    got = _collect(ArrayLoader(ro, labels, batch_size=4, shuffle=True, seed=2, augment=True))
    ref = _collect(ArrayLoader(images, labels, batch_size=4, shuffle=True, seed=2, augment=True))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[2], q[2]) for p, q in zip(got, ref))


def test_prefetch_thread_same_batches_early_stop_and_errors(monkeypatch):
    images, labels = _data(n=17)
    kwargs = dict(batch_size=3, shuffle=True, seed=6, augment=True)
    ref = _collect(ArrayLoader(images, labels, **kwargs))
    threads_before = threading.active_count()
    got = _collect(ArrayLoader(images, labels, prefetch=2, **kwargs))
    assert len(got) == len(ref) == 6
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[2], q[2]) for p, q in zip(got, ref))
    loader = ArrayLoader(images, labels, prefetch=1, **kwargs)
    for i, _ in enumerate(loader):
        if i == 1:
            break  # abandoning the epoch must not leave the thread running
    import gc

    gc.collect()
    assert threading.active_count() == threads_before

    def broken(self):
        yield from ()
        raise OSError("disk went away")

    monkeypatch.setattr(ArrayLoader, "_host_batches", broken)
    with pytest.raises(OSError, match="disk went away"):
        list(ArrayLoader(images, labels, prefetch=2, **kwargs))
    assert threading.active_count() == threads_before


def test_bad_input_errors():
    images, labels = _data(n=4)
    with pytest.raises(ValueError, match="images must be a uint8 numpy array"):
        ArrayLoader(images.astype(np.float32), labels, batch_size=2, shuffle=False)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ArrayLoader(np.zeros((4, 2, 8, 8), np.uint8), labels, batch_size=2, shuffle=False)
    with pytest.raises(ValueError, match=r"labels must be \[N, K\] with N = 4"):
        ArrayLoader(images, labels[:3], batch_size=2, shuffle=False)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, world_size=2\)"):
        ArrayLoader(images, labels, batch_size=2, shuffle=False, rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        ArrayLoader(images, labels, batch_size=2, shuffle=False, indices=[0, 4])
    with pytest.raises(ValueError, match="duplicates"):
        ArrayLoader(images, labels, batch_size=2, shuffle=False, indices=[1, 1])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ArrayLoader(images, labels, batch_size=0, shuffle=False)
    with pytest.raises(ValueError, match="drop_last with batch_size=8 leaves no batch"):
        ArrayLoader(images, labels, batch_size=8, shuffle=False, drop_last=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    images, labels = _data(n=11, h=16, w=16)
    kwargs = dict(batch_size=4, shuffle=True, seed=1, augment=True)
    cpu = _collect(ArrayLoader(images, labels, **kwargs))
    gpu_loader = ArrayLoader(images, labels, device="cuda", **kwargs)
    gpu = list(gpu_loader)
    assert gpu_loader.prefetch == 2
    for (x, y, i), b in zip(cpu, gpu):
        assert b.x.is_cuda and b.x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(i, b.index.cpu())
        torch.testing.assert_close(b.x.cpu(), x, atol=1e-4, rtol=0)
