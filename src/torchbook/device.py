"""Pick the compute device from BOOK_DEVICE=auto|cpu|cuda|mps."""
from __future__ import annotations

import os

import torch

CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    """Return True if Apple's Metal (MPS) backend can be used."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """List the device types this machine can use, best first."""
    found = ["cuda"] if torch.cuda.is_available() else []
    if _mps_available():
        found.append("mps")
    return found + ["cpu"]


def get_device(name: str | None = None) -> torch.device:
    """Return the device named by `name` or $BOOK_DEVICE (default auto: cuda, then mps, then cpu)."""
    choice = (name or os.environ.get("BOOK_DEVICE") or "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(
            f"BOOK_DEVICE={choice!r} is not one of {', '.join(CHOICES)}; "
            "set it to auto (the default) or to a device this machine has."
        )
    usable = available_devices()
    if choice == "auto":
        return torch.device(usable[0])
    if choice not in usable:
        raise RuntimeError(
            f"BOOK_DEVICE={choice!r} was asked for, but this machine has only: {', '.join(usable)}. "
            "Unset BOOK_DEVICE (or set it to auto or cpu); on Colab choose "
            "Runtime > Change runtime type > GPU for cuda."
        )
    return torch.device(choice)


def describe_device(device: torch.device) -> str:
    """Return a short human description of `device`, e.g. 'cuda (NVIDIA H100)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
