"""Tests for torchbook.device: the BOOK_DEVICE toggle."""
from __future__ import annotations

import pytest
import torch

from torchbook import device as dev


def test_auto_picks_the_best_available(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto (and unset) give the first of cuda, mps, cpu that this machine has."""
    monkeypatch.delenv("BOOK_DEVICE", raising=False)
    best = dev.available_devices()[0]
    assert dev.get_device().type == best
    monkeypatch.setenv("BOOK_DEVICE", "auto")
    assert dev.get_device().type == best


def test_auto_prefers_cuda_then_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    """With cuda and mps faked present, auto picks cuda; with only mps, mps."""
    monkeypatch.setattr(dev, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.get_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.get_device("auto").type == "mps"


def test_cpu_is_always_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """BOOK_DEVICE=cpu gives the CPU whatever else the machine has."""
    monkeypatch.setenv("BOOK_DEVICE", "CPU")
    assert dev.get_device() == torch.device("cpu")


def test_missing_device_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for a device that is not there raises an error naming what is there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    monkeypatch.setenv("BOOK_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match=r"'cuda' was asked for.*only: cpu.*Unset BOOK_DEVICE"):
        dev.get_device()


def test_unknown_device_name_is_rejected() -> None:
    """A misspelt device name is a ValueError listing the choices."""
    with pytest.raises(ValueError, match="auto, cpu, cuda, mps"):
        dev.get_device("gpu")


def test_describe_device_names_cpu_threads() -> None:
    """The CPU description says how many threads torch uses."""
    assert dev.describe_device(torch.device("cpu")) == f"cpu ({torch.get_num_threads()} threads)"
