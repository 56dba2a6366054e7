"""Book-wide settings: fast mode, where the data lives, and seeding."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """Return True when BOOK_FAST asks for the quick run on the committed sample."""
    return os.environ.get("BOOK_FAST", "").strip().lower() in _TRUE


def by_mode(full: T, fast: T) -> T:
    """Pick `fast` in fast mode and `full` otherwise (epochs, sample sizes, ...)."""
    return fast if fast_mode() else full


def _looks_like_repo(path: Path) -> bool:
    """Return True if `path` is a torchbook checkout (it has pyproject.toml and the data sample)."""
    return (path / "pyproject.toml").is_file() and (path / "data" / "sample").is_dir()


def repo_root() -> Path | None:
    """Return the torchbook checkout we run from, or None (e.g. a pip install on Colab)."""
    package_repo = Path(__file__).resolve().parents[2]
    if _looks_like_repo(package_repo):
        return package_repo
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if _looks_like_repo(candidate):
            return candidate
    return None


def data_dir() -> Path:
    """Return the data folder: $BOOK_DATA_DIR, else the checkout's data/, else ./data."""
    if os.environ.get("BOOK_DATA_DIR"):
        return Path(os.environ["BOOK_DATA_DIR"]).expanduser().resolve()
    root = repo_root()
    return (root / "data") if root else (Path.cwd() / "data").resolve()


def sample_dir() -> Path:
    """Return the folder of the small committed CIFAR-10 sample used in fast mode."""
    return data_dir() / "sample"


def models_dir() -> Path:
    """Return the folder where chapters save trained models for later chapters."""
    return data_dir() / "models"


def seed_everything(seed: int = 42) -> int:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs) so runs repeat; return the seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed
