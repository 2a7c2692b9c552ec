"""Image decoding: the package's one decoder, from an image file (or a PIL image) to uint8 ``[channels, S, S]``.

Every file-backed dataset reads its pixels through :func:`load_image`: PIL decodes the
file, 16-bit grey is scaled (not clipped) to 8 bits, the image is converted to "L" or
"RGB" and brought to ``S`` x ``S`` either torchvision-style (``fit="crop"``: resize the
shorter side, then centre-crop; the real loaders) or by resizing both sides
(``fit="stretch"``; :class:`~kdmed.data.folder.FolderDataset`).
"""

from __future__ import annotations

import os

import numpy as np

from kdmed.data._io import DataError, MissingDataError

#: how an image is brought to ``size`` x ``size``
FITS = ("crop", "stretch")


def _to_mode(img, mode: str):
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL's own I;16 -> L conversion clips at 255; scale the 16-bit range instead
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    return img if img.mode == mode else img.convert(mode)


def resize_center_crop(img, size: int):
    """Resize the shorter side to ``size`` (bilinear, antialiased) and crop the centre ``size`` x ``size``.

    Output sizes and crop offsets follow torchvision's ``Resize(size)`` + ``CenterCrop(size)``.
    """
    from PIL import Image

    w, h = img.size
    if (w, h) != (size, size):
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left = int(round((new_w - size) / 2.0))
        top = int(round((new_h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    return img


def to_chw(img) -> np.ndarray:
    """PIL image ("L" or "RGB") -> uint8 ``[channels, H, W]``."""
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.array(arr, order="C", copy=True)  # PIL's buffer is read-only


def load_image(dataset: str, path: str | os.PathLike, mode: str, size: int, fit: str = "crop") -> np.ndarray:
    """Decode ``path`` with PIL, convert to ``mode`` ("L"/"RGB") and bring it to ``size`` x ``size``.

    ``fit="crop"`` resizes the shorter side and centre-crops (:func:`resize_center_crop`);
    ``fit="stretch"`` resizes both sides to ``size`` (bilinear), changing the aspect ratio.
    Returns uint8 ``[1 or 3, size, size]``. A missing file raises :class:`MissingDataError`, an
    unreadable, corrupt or truncated one :class:`DataError`, both naming the file.
    """
    from PIL import Image

    if fit not in FITS:
        raise ValueError(f"{dataset}: fit={fit!r} is not allowed; expected one of {FITS}")
    try:
        with Image.open(path) as im:
            im.load()
            img = _to_mode(im, mode)
    except FileNotFoundError as err:
        raise MissingDataError(f"{dataset}: image {path} does not exist") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{dataset}: cannot decode image {path} (corrupt, truncated or not an image): {err}") from err
    if fit == "stretch":
        return to_chw(img.resize((int(size), int(size)), Image.Resampling.BILINEAR))
    return to_chw(resize_center_crop(img, size))
