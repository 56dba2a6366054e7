"""Tests for torchbook.settings: fast mode, data paths and seeding."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from torchbook import settings


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True),
                                             ("0", False), ("", False), ("no", False)])
def test_fast_mode_reads_book_fast(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    """BOOK_FAST switches fast mode on for the usual truthy spellings only."""
    monkeypatch.setenv("BOOK_FAST", value)
    assert settings.fast_mode() is expected


def test_by_mode_picks_the_value_for_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """by_mode returns the fast value in fast mode and the full value otherwise."""
    monkeypatch.setenv("BOOK_FAST", "1")
    assert settings.by_mode(full=20, fast=2) == 2
    monkeypatch.delenv("BOOK_FAST")
    assert settings.by_mode(full=20, fast=2) == 20


def test_data_dir_is_the_checkouts_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without BOOK_DATA_DIR the data lives in the checkout's data/ folder, sample included."""
    monkeypatch.delenv("BOOK_DATA_DIR", raising=False)
    root = Path(__file__).resolve().parents[1]
    assert settings.repo_root() == root
    assert settings.data_dir() == root / "data"
    assert (settings.sample_dir() / "cifar2" / "train" / "0_airplane").is_dir()


def test_book_data_dir_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """BOOK_DATA_DIR points every data path at another folder."""
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    assert settings.data_dir() == tmp_path.resolve()
    assert settings.models_dir() == tmp_path.resolve() / "models"


def test_seed_everything_repeats_all_generators() -> None:
    """Two seeded draws from Python, NumPy and torch are identical; another seed differs."""
    def draw() -> tuple[float, float, list[float]]:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    settings.seed_everything(7)
    first = draw()
    settings.seed_everything(7)
    assert draw() == first
    settings.seed_everything(8)
    assert draw() != first


@pytest.fixture
def pytorch_defaults(monkeypatch: pytest.MonkeyPatch):
    """Run a test from PyTorch's default kernel settings and restore them afterwards."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(settings, "_cublas_before", settings._UNSET)
    settings.use_deterministic_kernels(False)
    yield
    settings.use_deterministic_kernels(False)


def kernel_settings() -> tuple:
    """The switches that PyTorch's reproducibility notes name, and the cuBLAS variable."""
    import os

    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_deterministic_seeding_sets_what_pytorch_requires(pytorch_defaults: None) -> None:
    """deterministic=True: deterministic algorithms, no cuDNN benchmark, cuBLAS workspace set."""
    assert kernel_settings() == (False, False, False, None)
    settings.seed_everything(3, deterministic=True)
    assert kernel_settings() == (True, False, True, ":4096:8")


def test_seeding_without_deterministic_leaves_the_kernel_settings_alone(
        pytorch_defaults: None) -> None:
    """The default (None) only seeds, whatever the settings are; it switches nothing off."""
    settings.seed_everything(3)
    assert kernel_settings() == (False, False, False, None)
    settings.seed_everything(3, deterministic=True)
    settings.seed_everything(4)
    assert kernel_settings() == (True, False, True, ":4096:8")


def test_deterministic_false_restores_the_defaults_and_the_variable(
        pytorch_defaults: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """deterministic=False undoes True, and gives back a CUBLAS_WORKSPACE_CONFIG set before."""
    torch.backends.cudnn.benchmark = True
    settings.seed_everything(3, deterministic=True)
    assert kernel_settings() == (True, False, True, ":4096:8")
    settings.seed_everything(3, deterministic=False)
    assert kernel_settings() == (False, False, False, None)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "user value")
    settings.seed_everything(3, deterministic=True)
    assert kernel_settings()[3] == ":4096:8"
    settings.seed_everything(3, deterministic=False)
    assert kernel_settings()[3] == "user value"



def test_cpu_threads_sets_and_restores_the_thread_count() -> None:
    """Inside the block torch uses the asked threads (None: unchanged); after it, the old count."""
    import torch

    from torchbook.settings import cpu_threads
    before = torch.get_num_threads()
    with cpu_threads(1) as inside:
        assert inside == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(None) as inside:
        assert inside == before
