"""Training batches from an in-memory (or memory-mapped) uint8 image array.

Images are decoded once into a uint8 ``[N, C, H, W]`` array (see
:mod:`kdmed.data.cache`); an epoch then only gathers rows, copies them to the
device as uint8 (4x less traffic than float) and converts, augments and
normalises there in a few batched ops. There are no worker processes, so the
same seed gives the same batches on any machine.

Augmentation follows the authors' recipe: random horizontal flip and a random
rotation in ``±15°``, both done by one ``affine_grid``/``grid_sample`` call on the
``[0, 1]`` image (the corners a rotation uncovers are black, as with torchvision's
``RandomRotation``), before the ImageNet mean/std normalisation.
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the authors' training augmentation
DEFAULT_AUGMENT = {"hflip": True, "rotate": 15.0}


class Batch(NamedTuple):
    """One training batch, all on the loader's device.

    ``x`` float32 ``[B, 3, H, W]`` normalised; ``y`` float32 ``[B, K]`` (NaN kept);
    ``index`` int64 ``[B]``: the rows of the image array (to look up cached teacher outputs).
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


def parse_augment(augment: bool | Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise the ``augment`` option to ``{"hflip": bool, "rotate": degrees}``."""
    if augment is None or augment is False:
        return {"hflip": False, "rotate": 0.0}
    if augment is True:
        return dict(DEFAULT_AUGMENT)
    if not isinstance(augment, Mapping):
        raise ValueError(f"augment must be a bool or a dict {{'hflip': bool, 'rotate': degrees}}, got {augment!r}")
    unknown = sorted(set(augment) - {"hflip", "rotate"})
    if unknown:
        raise ValueError(f"augment: unknown key(s) {unknown}; expected 'hflip' and/or 'rotate'")
    hflip = augment.get("hflip", False)
    rotate = augment.get("rotate", 0.0)
    if not isinstance(hflip, bool):
        raise ValueError(f"augment['hflip'] must be True or False, got {hflip!r}")
    if isinstance(rotate, bool) or not isinstance(rotate, (int, float)) or not 0 <= rotate <= 180:
        raise ValueError(f"augment['rotate'] must be a number of degrees in [0, 180], got {rotate!r}")
    return {"hflip": hflip, "rotate": float(rotate)}


def affine_augment(x: torch.Tensor, angles_deg: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` ``[B, C, H, W]`` by its angle (degrees) and mirror it where ``flips``.

    One bilinear ``grid_sample``; uncovered pixels become 0. The rotation is a true
    rotation in pixel space also for non-square images.
    """
    b, _, h, w = x.shape
    theta_rad = angles_deg.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(theta_rad), torch.sin(theta_rad)
    sign = 1.0 - 2.0 * flips.to(torch.float64)  # -1 mirrors the x axis
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    # output pixel (u, v) samples the input at R·(sign·u, v), in normalised coordinates
    theta[:, 0, 0] = cos * sign
    theta[:, 0, 1] = -sin * (h / w)
    theta[:, 1, 0] = sin * sign * (w / h)
    theta[:, 1, 1] = cos
    theta = theta.to(device=x.device, dtype=x.dtype, non_blocking=True)
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # SplitMix64's finaliser: a bijective mix of 64-bit words (Steele et al. 2014)
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def view_uniforms(view_seed: int, epoch: int, ids: np.ndarray, k: int = 2) -> np.ndarray:
    """``[len(ids), k]`` uniforms in [0, 1) that depend only on ``(view_seed, epoch, id)``.

    The augmentation of an image in an epoch is a pure function of these numbers, so
    every run with the same view seed sees the same view of an image whatever its
    batch, shuffle, rank or subset (and a teacher's outputs on it can be shared).
    """
    ids = np.asarray(ids, dtype=np.uint64)
    base = _splitmix64(_splitmix64(np.uint64(view_seed)) ^ np.uint64(epoch))
    out = np.empty((ids.size, k), dtype=np.float64)
    for j in range(k):
        bits = _splitmix64(_splitmix64(ids ^ base) + np.uint64(j + 1))
        out[:, j] = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return out


def view_parameters(augment: Mapping[str, Any], view_seed: int, epoch: int,
                    ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(flips, angles in degrees)`` of :func:`view_uniforms` for ``augment``."""
    u = view_uniforms(view_seed, epoch, ids)
    flips = torch.from_numpy(u[:, 0] < 0.5) if augment["hflip"] else torch.zeros(len(u), dtype=torch.bool)
    angles = torch.from_numpy((u[:, 1] * 2 - 1) * augment["rotate"])
    return flips, angles


class ArrayLoader:
    """Iterate shuffled, augmented, normalised batches of a uint8 image array on a device.

    ``images``: uint8 ``[N, C, H, W]`` ndarray or memmap, C = 1 (grey, repeated to 3
    channels on the device) or 3; ``labels``: float ``[N, K]`` (NaN = unknown, kept).
    ``indices``: the rows to use (default all). The order of an epoch depends only on
    ``(seed, epoch)`` (see :meth:`set_epoch`); the augmentation of each image only on
    ``(view_seed, epoch, view_ids[row])`` (:func:`view_uniforms`; ``view_seed``
    defaults to ``seed``, ``view_ids`` to the row numbers: give the images' stable
    ids, e.g. their rows in the full split, so nested subsets share views). With ``world_size > 1`` each rank gets every ``world_size``-th
    element of the same permutation, padded by repetition to equal length (like
    ``DistributedSampler``). ``prefetch`` batches are gathered and pinned by a
    background thread (default: 2 on CUDA, none on CPU).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        augment: bool | Mapping[str, Any] = False,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        indices: np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool | None = None,
        prefetch: int | None = None,
        view_seed: int | None = None,
        view_ids: np.ndarray | None = None,
    ) -> None:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            desc = f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
            raise ValueError(f"images must be a uint8 numpy array [N, C, H, W], got {desc.strip()}")
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels (axis 1), got shape {images.shape}")
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be [N, K] with N = {images.shape[0]} images, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.floating):
            raise ValueError(f"labels must be floating point (NaN = unknown), got dtype {labels.dtype}")
        for name, value in (("batch_size", batch_size), ("world_size", world_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")

        n = images.shape[0]
        if indices is None:
            rows = np.arange(n, dtype=np.int64)
        else:
            rows = np.asarray(indices)
            if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
                raise ValueError(f"indices must be a 1-D array of ints, got dtype {rows.dtype} shape {rows.shape}")
            rows = rows.astype(np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= n):
                raise ValueError(f"indices must lie in [0, {n}), got values from {rows.min()} to {rows.max()}")
            if np.unique(rows).size != rows.size:
                raise ValueError("indices contain duplicates; each row may appear once per epoch")
        if rows.size == 0:
            raise ValueError("the loader has no rows (empty images or indices)")

        if view_ids is None:
            view_ids = np.arange(n, dtype=np.int64)
        view_ids = np.asarray(view_ids)
        if view_ids.shape != (n,) or (n and not np.issubdtype(view_ids.dtype, np.integer)) or \
                (n and view_ids.min() < 0):
            raise ValueError(f"view_ids must be {n} non-negative ints (one per image), got shape {view_ids.shape}")
        if view_seed is not None and (not isinstance(view_seed, (int, np.integer)) or view_seed < 0):
            raise ValueError(f"view_seed must be a non-negative int, got {view_seed!r}")
        self.images = images
        self.labels = labels.astype(np.float32, copy=False)
        self.view_ids = view_ids.astype(np.int64)
        self.view_seed = int(seed if view_seed is None else view_seed)
        self.rows = rows
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.augment = parse_augment(augment)
        self.device = torch.device(device)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        on_cuda = self.device.type == "cuda"
        self.channels_last = on_cuda if channels_last is None else bool(channels_last)
        self.prefetch = (2 if on_cuda else 0) if prefetch is None else int(prefetch)
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch!r}")
        self.epoch = 0
        self.num_samples = math.ceil(rows.size / self.world_size)  # per rank, after padding
        if self.drop_last and self.num_samples < self.batch_size:
            raise ValueError(
                f"drop_last with batch_size={batch_size} leaves no batch: only {self.num_samples} rows per rank"
            )
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
        self._mean = mean.to(self.device)
        self._std = std.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: its shuffle order and augmentations depend on ``(seed, epoch)``."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Number of batches this rank yields per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def epoch_rows(self) -> np.ndarray:
        """The image rows this rank visits in the current epoch, in order (padded for DDP)."""
        order = self.rows
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
            order = order[rng.permutation(order.size)]
        total = self.num_samples * self.world_size
        if total > order.size:
            order = np.resize(order, total)  # repeats from the start, like DistributedSampler
        mine = order[self.rank : total : self.world_size]
        if self.drop_last:
            mine = mine[: len(self) * self.batch_size]
        return mine

    def _host_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        rows = self.epoch_rows()
        pin = self.device.type == "cuda"
        for start in range(0, rows.size, self.batch_size):
            # sorted rows read a memmap sequentially; the order inside a batch does not matter
            idx = np.sort(rows[start : start + self.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
            y = torch.from_numpy(np.ascontiguousarray(self.labels[idx]))
            i = torch.from_numpy(idx)
            if pin:
                x, y, i = x.pin_memory(), y.pin_memory(), i.pin_memory()
            yield x, y, i

    def _prefetched(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for item in self._host_batches():
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                item = done
            except BaseException as exc:  # handed to the consumer, which re-raises it
                item = exc
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        thread = threading.Thread(target=produce, name="ArrayLoader-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()

    @property
    def augments(self) -> bool:
        """Whether the images change between epochs (a flip or a rotation is on)."""
        return bool(self.augment["hflip"] or self.augment["rotate"] > 0)

    def view(self, rows: np.ndarray, epoch: int) -> torch.Tensor:
        """The images of array ``rows`` as epoch ``epoch`` shows them (augmented, normalised, on the device)."""
        rows = np.asarray(rows, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
        return self._to_device(x, torch.from_numpy(rows), epoch)

    def _to_device(self, x: torch.Tensor, rows: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        if self.augments:
            epoch = self.epoch if epoch is None else epoch
            flips, angles = view_parameters(self.augment, self.view_seed, epoch, self.view_ids[rows.numpy()])
            x = affine_augment(x, angles, flips)
        # broadcasting a grey [B, 1, H, W] batch against the 3 channel means makes it RGB
        x = (x - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __iter__(self) -> Iterator[Batch]:
        source = self._prefetched() if self.prefetch > 0 else self._host_batches()
        for x, y, i in source:
            yield Batch(
                self._to_device(x, i),
                y.to(self.device, non_blocking=True),
                i.to(self.device, non_blocking=True),
            )
