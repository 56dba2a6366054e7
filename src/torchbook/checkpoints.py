"""Save and load trained models safely (generic: the book's own trained models are in `trained`).

- `save_checkpoint(path, model, meta)`: the `state_dict` plus metadata (model class, config,
  metrics, torch version), written atomically: a temporary file, then `os.replace`, so a crash
  never leaves half a checkpoint behind.
- `load_checkpoint(path, model)`: `torch.load(..., weights_only=True)` (no arbitrary code from a
  file), with errors that say what went wrong and what to do: missing file, corrupt file, or a
  checkpoint saved from another model.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch import nn

FORMAT = "torchbook-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the given model; the message says what to do."""


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | Path, model: nn.Module, meta: Optional[dict] = None) -> Path:
    """Save the model's state_dict and JSON-like `meta` to `path` atomically; return the path."""
    path = Path(path)
    meta = json.loads(json.dumps(meta or {}))  # only plain types, so weights_only loading works
    payload = {"format": FORMAT, "model_class": type(model).__name__, "torch": str(torch.__version__),
               "meta": meta, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
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
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_checkpoint(path: str | Path) -> dict:
    """Read a torchbook checkpoint (weights_only); raise CheckpointError if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train the model and save it first "
                              "(chapters 4-6 call torchbook.trained.load_or_train_cifar2_model(), which does both).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(error).__name__}: {first_line(error)}). "
                              "It is probably corrupt or truncated: delete it and train again.") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a torchbook checkpoint (no '{FORMAT}' format marker). "
                              "Save it with torchbook.checkpoints.save_checkpoint, or delete it and train again.")
    return payload


def load_checkpoint(path: str | Path, model: nn.Module) -> dict:
    """Load the weights saved at `path` into `model` (in place); return the checkpoint's metadata."""
    payload = read_checkpoint(path)
    saved, wanted = payload["model_class"], type(model).__name__
    config = payload["meta"].get("config")
    origin = f"a {saved}" + (f" with config {config}" if config else "")
    if saved != wanted:
        raise CheckpointError(f"{path} was saved from {origin}, not a {wanted}. Build a {saved} to load it "
                              f"into, or delete the file and train a {wanted} again.")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise CheckpointError(f"{path} was saved from {origin}, whose layers do not match this {wanted} "
                              f"({first[1].strip() if len(first) > 1 else first[0]}). Build the model with "
                              "the saved config, or delete the file and train again.") from error
    return payload["meta"]
