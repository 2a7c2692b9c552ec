"""The image cache: memmap entries, validity checks, rebuilds, failed builds, in-memory synthetic data."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from kdmed.data.cache import (
    CacheBuildError,
    cache_key,
    cached_image_array,
    default_cache_dir,
)
from kdmed.data.folder import FolderDataset
from kdmed.data.images import load_image
from kdmed.data.synthetic import SyntheticChest
from kdmed.utils import repo_root

S = 24


def _write_images(folder, n=7, mode="L", size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        p = folder / f"im{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def _reference(paths, channels=1):
    # independent reference: plain PIL, no kdmed code
    out = []
    for p in paths:
        im = Image.open(p).convert("L" if channels == 1 else "RGB").resize((S, S), Image.Resampling.BILINEAR)
        a = np.asarray(im)
        out.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    return np.stack(out)


@pytest.fixture
def files(tmp_path):
    return _write_images(tmp_path / "src")


def _entry_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_build_then_reuse(tmp_path, files, monkeypatch):
    ds = FolderDataset(files, image_size=S)
    cdir = tmp_path / "cache"
    arr = cached_image_array(ds, cache_dir=cdir, progress=False, workers=2)
    assert isinstance(arr, np.memmap) and arr.mode == "r"
    assert arr.dtype == np.uint8 and arr.shape == (7, 1, S, S)
    np.testing.assert_array_equal(arr, _reference(files))
    key = cache_key(ds)
    assert _entry_files(cdir) == [f"{key}.json", f"{key}.u8"]
    meta = json.loads((cdir / f"{key}.json").read_text())
    assert meta["complete"] is True and meta["shape"] == [7, 1, S, S] and meta["key"] == key
    assert meta["identity"] == ds.cache_identity() and meta["dtype"] == "uint8"
    assert (cdir / f"{key}.u8").stat().st_size == 7 * S * S

    # a valid entry is read back without decoding anything
    def boom(self, row):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(FolderDataset, "_load_uint8", boom)
    again = cached_image_array(ds, cache_dir=cdir, progress=False)
    np.testing.assert_array_equal(again, _reference(files))
    with pytest.raises(ValueError):
        again[0, 0, 0, 0] = 1  # read-only


@pytest.mark.parametrize(
    "damage",
    ["no_marker", "incomplete", "wrong_shape", "truncated", "garbage_marker", "other_key"],
)
def test_invalid_entries_are_rebuilt(tmp_path, files, damage):
    ds = FolderDataset(files, image_size=S)
    cdir = tmp_path / "cache"
    cached_image_array(ds, cache_dir=cdir, progress=False)
    key = cache_key(ds)
    data, marker = cdir / f"{key}.u8", cdir / f"{key}.json"
    meta = json.loads(marker.read_text())
    if damage == "no_marker":
        marker.unlink()
    elif damage == "incomplete":
        marker.write_text(json.dumps({**meta, "complete": False}))
    elif damage == "wrong_shape":
        marker.write_text(json.dumps({**meta, "shape": [7, 1, S, S + 1]}))
    elif damage == "truncated":
        data.write_bytes(data.read_bytes()[:-10])
    elif damage == "garbage_marker":
        marker.write_text("{not json")
    elif damage == "other_key":
        marker.write_text(json.dumps({**meta, "key": "0" * 16}))
    if damage != "truncated":
        data.write_bytes(bytes(data.stat().st_size))  # zeros: a rebuild must restore the pixels
    arr = cached_image_array(ds, cache_dir=cdir, progress=False)
    np.testing.assert_array_equal(arr, _reference(files))
    assert json.loads(marker.read_text())["complete"] is True
    assert _entry_files(cdir) == [f"{key}.json", f"{key}.u8"]


def test_failed_build_leaves_nothing(tmp_path, files):
    files[3].write_bytes(b"this is not a png")
    ds = FolderDataset(files, image_size=S)
    cdir = tmp_path / "cache"
    with pytest.raises(CacheBuildError, match=r"folder: loading source row 3 failed"):
        cached_image_array(ds, cache_dir=cdir, progress=False, workers=2)
    assert _entry_files(cdir) == []


def test_failed_rebuild_removes_stale_marker(tmp_path, files):
    ds = FolderDataset(files, image_size=S)
    cdir = tmp_path / "cache"
    cached_image_array(ds, cache_dir=cdir, progress=False)
    key = cache_key(ds)
    (cdir / f"{key}.u8").write_bytes(b"\0")  # stale data: wrong size
    identity = ds.cache_identity()
    files[0].write_bytes(b"broken")
    ds_same_key = FolderDataset(files, image_size=S)
    ds_same_key.cache_identity = lambda: identity  # keep the key despite the changed file
    assert cache_key(ds_same_key) == key
    with pytest.raises(CacheBuildError):
        cached_image_array(ds_same_key, cache_dir=cdir, progress=False)
    # the old data file may stay, but no marker vouches for it and no temp file remains
    assert _entry_files(cdir) == [f"{key}.u8"]


def test_wrong_image_shape_is_named(tmp_path, files, monkeypatch):
    ds = FolderDataset(files, image_size=S)
    monkeypatch.setattr(FolderDataset, "_load_uint8", lambda self, row: np.zeros((1, S, S + 1), np.uint8))
    with pytest.raises(CacheBuildError, match=rf"source row 0 is uint8 \(1, {S}, {S + 1}\), expected uint8 \(1, {S}, {S}\)"):
        cached_image_array(ds, cache_dir=tmp_path / "c", progress=False, workers=1)
    assert _entry_files(tmp_path / "c") == []


def test_key_depends_on_rows_and_identity(tmp_path, files):
    ds = FolderDataset(files, image_size=S)
    sub = ds.take([4, 1, 2])
    assert cache_key(sub) != cache_key(ds)
    assert cache_key(FolderDataset(files, image_size=S + 1)) != cache_key(ds)
    assert cache_key(FolderDataset(files, image_size=S)) == cache_key(ds)
    arr = cached_image_array(sub, cache_dir=tmp_path / "c", progress=False)
    np.testing.assert_array_equal(arr, _reference(files)[[4, 1, 2]])


def test_rgb_and_workers_agree(tmp_path):
    paths = _write_images(tmp_path, n=5, mode="RGB")
    ds = FolderDataset(paths, image_size=S, channels=3)
    a = cached_image_array(ds, cache_dir=tmp_path / "c1", progress=False, workers=1)
    b = cached_image_array(ds, cache_dir=tmp_path / "c2", progress=False, workers=3)
    assert a.shape == (5, 3, S, S)
    np.testing.assert_array_equal(a, _reference(paths, channels=3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(load_image("t", paths[2], "RGB", S, fit="stretch"), _reference(paths, 3)[2])
    with pytest.raises(ValueError, match="workers must be >= 1"):
        cached_image_array(ds, cache_dir=tmp_path / "c3", progress=False, workers=0)


def test_synthetic_in_memory_by_default_and_cached_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("KDMED_CACHE_DIR", str(tmp_path / "default"))
    ds = SyntheticChest(split="val", image_size=S, n=50)
    mem = ds.image_array(progress=False)
    assert type(mem) is np.ndarray and mem.shape == (50, 1, S, S)
    assert not (tmp_path / "default").exists()  # nothing written for cheap synthetic data
    cached = ds.image_array(cache_dir=tmp_path / "c", progress=False)
    assert isinstance(cached, np.memmap)
    np.testing.assert_array_equal(cached, mem)
    # per-image loading and the batched fill agree
    np.testing.assert_array_equal(mem[17], ds.load_uint8(17))


def test_real_style_datasets_always_use_the_default_cache(tmp_path, files, monkeypatch):
    monkeypatch.setenv("KDMED_CACHE_DIR", str(tmp_path / "default"))
    ds = FolderDataset(files, image_size=S)
    arr = ds.image_array(progress=False)
    assert isinstance(arr, np.memmap)
    assert _entry_files(tmp_path / "default") == [f"{cache_key(ds)}.json", f"{cache_key(ds)}.u8"]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KDMED_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("KDMED_CACHE_DIR")
    assert default_cache_dir() == repo_root() / ".cache" / "images"


def test_empty_dataset(tmp_path):
    ds = FolderDataset([], image_size=S)
    arr = cached_image_array(ds, cache_dir=tmp_path / "c", progress=False)
    assert arr.shape == (0, 1, S, S) and arr.dtype == np.uint8
    assert _entry_files(tmp_path / "c") == []


def test_progress_bar_shown(tmp_path, files, capsys):
    ds = FolderDataset(files, image_size=S)
    cached_image_array(ds, cache_dir=tmp_path / "c", progress=True)
    assert "images folder/all" in capsys.readouterr().err
    assert os.listdir(tmp_path / "c")


def test_a_rebuild_removes_old_temporaries_of_a_killed_build(tmp_path, files):
    ds = FolderDataset(files, image_size=S)
    cdir = tmp_path / "cache"
    cdir.mkdir()
    key = cache_key(ds)
    old = cdir / f".{key}.u8.abc123.tmp"  # what a SIGKILL during a build leaves behind
    fresh = cdir / f".{key}.json.def456.tmp"  # another process writing right now
    other = cdir / ".otherkey.u8.zzz.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"partial")
    os.utime(old, (0, 0))
    os.utime(other, (0, 0))
    arr = cached_image_array(ds, cache_dir=cdir, progress=False)
    np.testing.assert_array_equal(arr, _reference(files))
    assert not old.exists()
    assert fresh.exists() and other.exists()  # recent, or another entry's: left alone
