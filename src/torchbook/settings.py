"""Book-wide settings: fast mode, where the data lives, seeding, and CPU threads."""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, TypeVar

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


CUBLAS_WORKSPACE = ":4096:8"  # what PyTorch's reproducibility notes ask of cuBLAS (CUDA >= 10.2)
_UNSET = object()
_cublas_before: object = _UNSET  # CUBLAS_WORKSPACE_CONFIG before use_deterministic_kernels set it


def seed_everything(seed: int = 42, deterministic: bool | None = None) -> int:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs); optionally pin deterministic kernels.

    `deterministic=True` also calls `use_deterministic_kernels(True)`, `False` restores PyTorch's
    defaults, and None (the default) leaves those settings as they are. Return the seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic is not None:
        use_deterministic_kernels(deterministic)
    return seed


def use_deterministic_kernels(enabled: bool = True) -> None:
    """Ask PyTorch for deterministic kernels (cuDNN, cuBLAS and the rest), or restore its defaults.

    On: `torch.use_deterministic_algorithms(True)` (an op without a deterministic version then
    raises a RuntimeError), cuDNN's benchmark off and its deterministic switch on, and
    CUBLAS_WORKSPACE_CONFIG=:4096:8, which cuBLAS reads only when CUDA starts: call this before
    the first GPU operation. Off: PyTorch's defaults, and the variable as it was before.
    """
    global _cublas_before
    if enabled and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (CUBLAS_WORKSPACE, ":16:8"):
        _cublas_before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    elif not enabled and _cublas_before is not _UNSET:
        if _cublas_before is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = _cublas_before
        _cublas_before = _UNSET
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = enabled


@contextmanager
def cpu_threads(threads: Optional[int]) -> Iterator[int]:
    """Run the block with `threads` torch CPU threads (None or 0: unchanged), then restore them."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
