"""Save and load trained models safely (generic: the book's own trained models are in `trained`).

Taught in chapter 5.

- `save_checkpoint(path, model, meta=None, optimizer=None, scheduler=None)`: the `state_dict`
  plus metadata (model class, config, metrics, torch version), the optimizer's and scheduler's
  states when given, and the random number generators' states; written atomically (a temporary
  file, then `os.replace`), so a crash never leaves half a checkpoint behind.
- `load_checkpoint(path, model)`: the weights only, with `torch.load(..., weights_only=True)` (no
  arbitrary code from a file), and errors that say what went wrong and what to do: missing file,
  corrupt or truncated file, not a torchbook checkpoint, or a checkpoint of another model.
- `resume_checkpoint(path, model, optimizer=None, scheduler=None)`: everything `save_checkpoint`
  saved, RNG states included, so that training continues exactly where it stopped.
- `rng_states()`, `restore_rng_states(states)`: torch (CPU and CUDA), Python `random` and NumPy,
  as tensors and plain lists (so that `weights_only=True` loading still reads them).
- `BestCheckpoints(directory, k, metric, mode)`: keep the k best checkpoints of a run on disk.
- `strip_prefix(state_dict, prefix)`: drop the `module.` that `DataParallel` and DDP add to keys.

Taught in chapter 10 (reusing trained models):

- `rename_keys(state_dict, pattern, replacement)`: rewrite every key with a regular expression,
  for weights saved under other names (e.g. `group1.` where the model says `stages.0.`).
- `drop_mismatched_shapes(state_dict, model)`: leave out the tensors whose shape differs from the
  model's (a new head), which `load_state_dict(..., strict=False)` would refuse.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

Scheduler = torch.optim.lr_scheduler.LRScheduler

FORMAT = "torchbook-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the given model; the message says what to do."""


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def rng_states() -> dict:
    """The states of every random number generator a training run draws from, as plain data."""
    numpy_state = np.random.get_state(legacy=False)
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": {"state": list(random.getstate()[1]), "gauss_next": random.getstate()[2]},
            "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                      "pos": numpy_state["state"]["pos"], "has_gauss": numpy_state["has_gauss"],
                      "gauss": numpy_state["gauss"]}}


def restore_rng_states(states: dict) -> None:
    """Put every random number generator back in the state `rng_states()` recorded."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():  # as many GPUs as both machines have
        torch.cuda.set_rng_state_all(states["cuda"][:torch.cuda.device_count()])
    random.setstate((3, tuple(states["python"]["state"]), states["python"]["gauss_next"]))
    numpy = states["numpy"]
    key = numpy["key"].numpy().astype(np.uint32)
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": key, "pos": numpy["pos"]},
                         "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})


def checkpoint_payload(model: nn.Module, meta: Optional[dict],
                       optimizer: Optional[torch.optim.Optimizer],
                       scheduler: Optional[Scheduler]) -> dict:
    """What save_checkpoint writes: weights, plain-data meta, training state and RNG states."""
    meta = json.loads(json.dumps(meta or {}))  # only plain types, so weights_only loading works
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "model_class": type(model).__name__,
               "torch": str(torch.__version__), "meta": meta, "state_dict": weights,
               "rng": rng_states()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    return payload


def save_checkpoint(path: str | Path, model: nn.Module, meta: Optional[dict] = None,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Optional[Scheduler] = None) -> Path:
    """Save weights, JSON-like `meta`, optimizer, scheduler and RNG states atomically."""
    path = Path(path)
    payload = checkpoint_payload(model, meta, optimizer, scheduler)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from others
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (torch's can run to a page)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # no terminal colour codes
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_checkpoint(path: str | Path) -> dict:
    """Read a torchbook checkpoint (weights_only); CheckpointError if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Check the path, or train the model and "
                              "save it first (for the book's cifar2 model, "
                              "torchbook.zoo.load_or_train_cifar2_model() does both).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: "
                              f"{first_line(error)}). It is probably corrupt or truncated: delete "
                              "it and train again.") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a torchbook checkpoint (no '{FORMAT}' format "
                              "marker). Save it with torchbook.checkpoints.save_checkpoint, or "
                              "delete it and train again.")
    return payload


def load_weights(path: Path, payload: dict, model: nn.Module) -> None:
    """Load a checkpoint's weights into `model`; CheckpointError if it is another architecture."""
    saved, wanted = payload["model_class"], type(model).__name__
    config = payload["meta"].get("config")
    origin = f"a {saved}" + (f" with config {config}" if config else "")
    if saved != wanted:
        raise CheckpointError(f"{path} was saved from {origin}, not a {wanted}. Build a {saved} "
                              f"to load it into, or delete the file and train a {wanted} again.")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{path} was saved from {origin}, whose layers do not match this "
                              f"{wanted} ({detail}). Build the model with the saved config, or "
                              "delete the file and train again.") from error


def load_checkpoint(path: str | Path, model: nn.Module) -> dict:
    """Load the weights saved at `path` into `model` (in place); return the checkpoint's meta."""
    payload = read_checkpoint(path)
    load_weights(Path(path), payload, model)
    return payload["meta"]


def saved_state(path: Path, payload: dict, name: str) -> dict:
    """The optimizer's or scheduler's saved state; CheckpointError if the file has none."""
    if name not in payload:
        raise CheckpointError(f"{path} holds no {name} state: it was saved without one. "
                              f"Pass {name}= to save_checkpoint to make it resumable, or pass "
                              f"no {name} here (load_checkpoint loads the weights alone).")
    return payload[name]


def resume_checkpoint(path: str | Path, model: nn.Module,
                      optimizer: Optional[torch.optim.Optimizer] = None,
                      scheduler: Optional[Scheduler] = None) -> dict:
    """Restore weights, optimizer, scheduler and RNG states saved at `path`; return the meta."""
    path = Path(path)
    payload = read_checkpoint(path)
    load_weights(path, payload, model)
    if optimizer is not None:
        optimizer.load_state_dict(saved_state(path, payload, "optimizer"))
    if scheduler is not None:
        scheduler.load_state_dict(saved_state(path, payload, "scheduler"))
    if "rng" in payload:
        restore_rng_states(payload["rng"])
    return payload["meta"]


def strip_prefix(state_dict: dict[str, torch.Tensor],
                 prefix: str = "module.") -> dict[str, torch.Tensor]:
    """A copy of `state_dict` with `prefix` removed from every key that starts with it."""
    return {key.removeprefix(prefix): value for key, value in state_dict.items()}


class BestCheckpoints:
    """Keep the `k` best checkpoints of a run in `directory`, ranked by one validation metric."""

    def __init__(self, directory: str | Path, k: int = 3, metric: str = "valid_auc",
                 mode: str = "max"):
        if mode not in ("max", "min") or k < 1:
            raise ValueError(f"need k >= 1 and mode 'max' or 'min', not k={k!r}, mode={mode!r}")
        self.directory, self.k, self.metric, self.mode = Path(directory), k, metric, mode
        self.kept = self.ranked(self.saved_before())  # (score, epoch, path), best first

    def saved_before(self) -> list[tuple[float, int, Path]]:
        """The checkpoints of this metric already in `directory` (a resumed run counts them in)."""
        found = []
        for path in self.directory.glob(f"epoch*-{self.metric}*.pt"):
            metrics = read_checkpoint(path)["meta"]["metrics"]
            found.append((float(metrics[self.metric]), int(metrics["epoch"]), path))
        return found

    def rank(self, score: float, epoch: int) -> tuple[float, int]:
        """A sort key, smaller for better: the score, then the epoch (the earlier wins ties)."""
        return (-score if self.mode == "max" else score), epoch

    def ranked(self, kept: list[tuple[float, int, Path]]) -> list[tuple[float, int, Path]]:
        """The (score, epoch, path) entries, best first."""
        return sorted(kept, key=lambda item: self.rank(item[0], item[1]))

    def update(self, model: nn.Module, metrics: dict,
               optimizer: Optional[torch.optim.Optimizer] = None,
               scheduler: Optional[Scheduler] = None) -> Optional[Path]:
        """Save a checkpoint if `metrics` is among the k best so far; drop the one it displaced."""
        score, epoch = float(metrics[self.metric]), int(metrics["epoch"])
        kept = [item for item in self.kept if item[1] != epoch]  # an epoch trained again
        if math.isnan(score) or (len(kept) == self.k
                                 and self.rank(score, epoch) >= self.rank(*kept[-1][:2])):
            return None  # NaN, or not better than the worst kept one
        name = f"epoch{epoch:03d}-{self.metric}{score:.4f}.pt"
        path = save_checkpoint(self.directory / name, model, {"metrics": metrics}, optimizer,
                               scheduler)
        self.kept = self.ranked(kept + [(score, epoch, path)])
        for _, _, dropped in self.kept[self.k:]:
            dropped.unlink(missing_ok=True)
        self.kept = self.kept[:self.k]
        return path

    @property
    def best_path(self) -> Optional[Path]:
        """The path of the best checkpoint kept so far (None before the first update)."""
        return self.kept[0][2] if self.kept else None


def rename_keys(state_dict: dict[str, torch.Tensor], pattern: str,
                replacement: str | Callable[[re.Match], str]) -> dict[str, torch.Tensor]:
    """A copy of `state_dict` with every key rewritten by `re.sub(pattern, replacement, key)`."""
    return {re.sub(pattern, replacement, key): value for key, value in state_dict.items()}


def drop_mismatched_shapes(state_dict: dict[str, torch.Tensor], model: nn.Module
                           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Leave out the tensors whose shape differs from the model's; return the rest, their names."""
    own = model.state_dict()
    kept = {key: value for key, value in state_dict.items()
            if key not in own or own[key].shape == value.shape}
    return kept, [key for key in state_dict if key not in kept]
