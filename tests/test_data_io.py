"""Image decoding/resizing (kdmed.data.images) and the table/path checks shared by the real loaders (kdmed.data._io)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms.functional as TF
from fixtures_data import garble_file, truncate_file
from PIL import Image

from kdmed.data import _io
from kdmed.data.images import load_image


def _reference(path, mode, size):
    """torchvision's Resize(size) + CenterCrop(size) on the PIL image, as uint8 [C, H, W]."""
    with Image.open(path) as im:
        img = im.convert(mode)
    out = np.asarray(TF.center_crop(TF.resize(img, size, antialias=True), size))
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


@pytest.mark.parametrize("wh", [(40, 32), (32, 40), (37, 37), (10, 7)])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_load_image_matches_torchvision_resize_then_center_crop(tmp_path, wh, mode):
    rng = np.random.default_rng(1)
    shape = (wh[1], wh[0]) if mode == "L" else (wh[1], wh[0], 3)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    for size in (8, 24, 50):
        got = load_image("t", path, mode, size)
        assert got.dtype == np.uint8 and got.shape == (1 if mode == "L" else 3, size, size)
        assert got.flags.writeable
        np.testing.assert_array_equal(got, _reference(path, mode, size))


def test_load_image_converts_colour_and_alpha_to_grey_and_back(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "a.png")
    grey = load_image("t", tmp_path / "a.png", "L", 20)
    # ITU-R 601-2 luma, as PIL defines "L" conversion
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    luma = (r * 299 + g * 587 + b * 114 + 500) // 1000
    np.testing.assert_allclose(grey[0], luma[:, 5:25], atol=1)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    col = load_image("t", tmp_path / "g.png", "RGB", 20)
    assert col.shape == (3, 20, 20) and (col[0] == col[1]).all() and (col[1] == col[2]).all()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x16.png")
    got = load_image("t", tmp_path / "x16.png", "L", 2)
    np.testing.assert_array_equal(got[0], [[0, 100], [255, 7]])
    # the same conversion when stretching (FolderDataset's fit)
    np.testing.assert_array_equal(load_image("t", tmp_path / "x16.png", "L", 2, fit="stretch")[0], [[0, 100], [255, 7]])


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_stretch_resizes_both_sides_like_plain_pil(tmp_path, mode):
    rng = np.random.default_rng(1)
    shape = (30, 40) if mode == "L" else (30, 40, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as im:
        ref = np.asarray(im.convert(mode).resize((24, 24), Image.Resampling.BILINEAR))
    ref = ref[None] if ref.ndim == 2 else ref.transpose(2, 0, 1)
    np.testing.assert_array_equal(load_image("t", tmp_path / "s.png", mode, 24, fit="stretch"), ref)
    with pytest.raises(ValueError, match=r"t: fit='squash' is not allowed"):
        load_image("t", tmp_path / "s.png", mode, 24, fit="squash")


def test_truncated_garbled_and_absent_images_name_the_file(tmp_path):
    rng = np.random.default_rng(3)
    for name, damage in (("cut.jpg", truncate_file), ("junk.jpg", garble_file)):
        path = tmp_path / name
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(path, quality=95)
        damage(path)
        with pytest.raises(_io.DataError, match=rf"cannot decode image .*{name}"):
            load_image("ds", path, "L", 16)
    with pytest.raises(_io.MissingDataError, match=r"ds: image .*nothere\.png does not exist"):
        load_image("ds", tmp_path / "nothere.png", "L", 16)
    assert issubclass(_io.MissingDataError, FileNotFoundError) and issubclass(_io.DataError, ValueError)


def test_read_table_reads_gzip_by_content_and_names_missing_column(tmp_path):
    text = "a,b\n1,x\n2,y\n"
    plain, packed = tmp_path / "t.csv", tmp_path / "z.csv"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    for p in (plain, packed):
        pd.testing.assert_frame_equal(_io.read_table("d", p, ["a", "b"]), pd.read_csv(plain))
    with pytest.raises(_io.DataError, match=r"d: table .*t\.csv has no column 'c'"):
        _io.read_table("d", plain, ["a", "c"])
    with pytest.raises(FileNotFoundError, match=r"d: table .*absent\.csv does not exist"):
        _io.read_table("d", tmp_path / "absent.csv", ["a"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(_io.DataError, match=r"cannot parse table .*empty\.csv"):
        _io.read_table("d", tmp_path / "empty.csv", ["a"])


def test_numeric_column_names_file_row_and_column():
    df = pd.DataFrame({"v": ["1", "0", None, "yes"]})
    with pytest.raises(_io.DataError, match=r"f\.csv, row 4 \(line 5\), column 'v': value 'yes' is not allowed"):
        _io.numeric_column("d", df, "v", "f.csv", (0.0, 1.0), allow_blank=True)
    got = _io.numeric_column("d", df.iloc[:3], "v", "f.csv", (0.0, 1.0), allow_blank=True)
    np.testing.assert_array_equal(got, [1.0, 0.0, np.nan])
    with pytest.raises(_io.DataError, match=r"row 3 \(line 4\), column 'v': value blank"):
        _io.numeric_column("d", df.iloc[:3], "v", "f.csv", (0.0, 1.0), allow_blank=False)


def test_safe_relpaths_refuse_escapes_and_keep_inner_dots():
    ok = pd.Series(["a/b.jpg", "a/./c/../d.jpg"])
    assert _io.safe_relpaths("d", ok, "f.csv", "Path") == ["a/b.jpg", "a/d.jpg"]
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd", ".."):
        with pytest.raises(_io.DataError, match=r"f\.csv, row 2 \(line 3\), column 'Path': .* outside the dataset root"):
            _io.safe_relpaths("d", pd.Series(["a.jpg", bad]), "f.csv", "Path")


def test_option_checks_name_parameter_and_choices():
    with pytest.raises(_io.DataError, match=r"d: uncertain='maybe' is not allowed; expected one of \('zeros', 'ones'\)"):
        _io.check_choice("d", "uncertain", "maybe", ("zeros", "ones"))
    with pytest.raises(_io.DataError, match=r"val_fraction=1\.5 must be a number in \[0, 1\)"):
        _io.check_fraction("d", "val_fraction", 1.5)
    with pytest.raises(_io.DataError, match=r"split_fractions=\(0\.5, 0\.6, 0\.1\) must be 3 non-negative"):
        _io.check_fractions("d", "split_fractions", (0.5, 0.6, 0.1), 3)
    assert _io.check_fractions("d", "split_fractions", [0.5, 0.5, 0], 3) == (0.5, 0.5, 0.0)
