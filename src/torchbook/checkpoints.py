"""Save and load trained models safely, and the cifar2 model every chapter from 4 on starts from.

- `save_checkpoint(path, model, meta)`: the `state_dict` plus metadata (model class, config,
  metrics, torch version), written atomically: a temporary file, then `os.replace`, so a crash
  never leaves half a checkpoint behind.
- `load_checkpoint(path, model)`: `torch.load(..., weights_only=True)` (no arbitrary code from a
  file), with errors that say what went wrong and what to do: missing file, corrupt file, or a
  checkpoint saved from another model.
- `load_or_train_cifar2_model()`: the book's recipe model for cifar2, loaded from
  `models_dir()/cifar2_recipe.pt` (`cifar2_recipe_fast.pt` in fast mode), which chapter 3 saves
  (trained on 9,000 images, best validation epoch), or else trained on all 10,000 training images
  (last epoch) and saved, so chapters run alone, in any order, on Colab too.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from torchbook.data import cifar2_folder
from torchbook.datasets import load_image_folder_as_tensors
from torchbook.device import get_device
from torchbook.recipe import RecipeConfig, build_model, evaluate, train_recipe
from torchbook.settings import by_mode, fast_mode, models_dir

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
                              "(chapters 4-6 call load_or_train_cifar2_model(), which does both).")
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


def cifar2_checkpoint_path() -> Path:
    """Where the book keeps its cifar2 recipe model: a separate file in fast mode."""
    return models_dir() / by_mode(full="cifar2_recipe.pt", fast="cifar2_recipe_fast.pt")


def cifar2_split_folder(split: str) -> Path:
    """The cifar2 ImageFolder for `split` ("train" or "test"): the sample in fast mode."""
    return Path(cifar2_folder(split))


def cifar2_recipe_config() -> RecipeConfig:
    """The recipe's config for the book's cifar2 model; smaller batches, one thread on the sample."""
    return by_mode(full=RecipeConfig(), fast=RecipeConfig(epochs=15, batch_size=32, lr=0.05, threads=1))


def train_cifar2_model(path: Path, device: torch.device, progress: bool = False) -> nn.Module:
    """Train the recipe on all of cifar2 train (last epoch kept), evaluate on test, save to `path`; return it."""
    config = cifar2_recipe_config()
    images, labels, classes = load_image_folder_as_tensors(cifar2_split_folder("train"))
    model, history = train_recipe(images, labels, config, device, progress=progress)
    test_images, test_labels, _ = load_image_folder_as_tensors(cifar2_split_folder("test"))
    metrics = evaluate(model, test_images, test_labels, device, tta=True)
    save_checkpoint(path, model, {"config": config.to_dict(), "classes": classes, "fast_mode": fast_mode(),
                                  "train_images": len(labels), "test_metrics": metrics,
                                  "history": history.to_dict(orient="list")})
    return model


def load_or_train_cifar2_model(device: Optional[torch.device] = None, progress: bool = False) -> nn.Module:
    """The book's cifar2 recipe model in eval mode: loaded if saved before, else trained and saved.

    Chapter 3 saves the model it trains with its `Trainer` (9,000 training images, the epoch with
    the best validation AUC); without that file this function trains the same recipe on all 10,000
    training images and keeps the last epoch: the same recipe and config either way.
    """
    device = device or get_device()
    path = cifar2_checkpoint_path()
    config = cifar2_recipe_config()
    model = build_model(config)
    try:
        load_checkpoint(path, model)
    except CheckpointError as error:
        if path.exists():
            print(f"Training the cifar2 model again: {str(error).split('. ')[0]}.")
        model = train_cifar2_model(path, device, progress=progress)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()

