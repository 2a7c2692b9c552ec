"""Which device a run trains on and in which precision: "auto" resolved, bf16 autocast on CUDA only."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; other values unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def autocast_context(device: torch.device | str, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op elsewhere (the CPU path stays fp32)."""
    device = torch.device(device)
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
