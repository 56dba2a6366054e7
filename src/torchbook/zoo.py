"""The book's trained models (the zoo): `make models` trains them, every chapter loads them.

    python -m torchbook.zoo [cifar2 cifar10 cifar8] [--list]     # make models

trains each model the chapters load, before they run, skipping a model saved with its current
recipe. While a model trains, every epoch is saved in a run folder beside it (`NAME.run/`:
`last.pt`, `best.pt`, `history.csv`), so that a stopped or killed run continues from its last
complete epoch; the folder goes once the model is saved. Each epoch prints one line: its metrics,
images per second and the time left. A chapter run alone (Colab, a reader's Jupyter) loads the
model, or trains it through the same code with the same lines. The ten-class model and the
backbone are trained by the book's engine (`torchbook.engine`, chapter 7's command line); the
cifar2 model by chapter 3's `Trainer`, exactly as chapter 3 trains it in front of the reader.

- `cifar2_data()`: chapter 3's cifar2 tensors, split into `fit` (9,000 training images; 160 in fast
  mode), `valid` (the seeded 1,000 held out; 40 in fast mode) and `test`.
- `load_or_train_cifar2_model()`: the recipe model chapter 3 saves (trained on `fit`, the epoch
  with the best validation AUC), loaded from `cifar2_checkpoint_path()`, or trained here the same
  way and saved when there is no usable file; either way in eval mode, with no `.grad` set.
- `cifar2_model_meta()`: what was saved with it (config, history, validation and test metrics).
- `load_or_train_cifar8_backbone()`: chapter 10's backbone, a small CIFAR ResNet trained on the
  eight CIFAR-10 classes that are not in cifar2 (no airplane, no automobile image at all), so that
  transfer to cifar2 from it is honest; `cifar8_data()`, `cifar8_backbone_meta()`.

Chapter 8's ten-class model, the same way: `cifar10_data()` (45,000 fit / 5,000 valid / 10,000
test; 900 / 100 / 200 in fast mode), `load_or_train_cifar10_model()` (the chapter 7 ResNet
trained with `Cifar10Config`'s recipe, saved at `cifar10_checkpoint_path()`),
`cifar10_model_meta()`, and `predict_cifar10_proba()` / `cifar10_metrics()` to evaluate it.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from torchbook.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from torchbook.data import cifar2_folder, cifar10_folder
from torchbook.datasets import (CIFAR2_MEAN, CIFAR2_STD, TensorBatches,
                                load_image_folder_as_tensors, random_flip_crop)
from torchbook.device import CHOICES, get_device
from torchbook.engine import TrainData, epoch_line, train_run
from torchbook.models import resnet
from torchbook.recipe import (RecipeConfig, build_model, evaluate, make_optimizer, model_on_device,
                              prepare_batch, smoothed_bce, uses_channels_last)
from torchbook.settings import by_mode, cpu_threads, fast_mode, models_dir, seed_everything
from torchbook.training import Callback, CheckpointCallback, Trainer, warmup_cosine_schedule

SPLIT_SEED = 0


@dataclass
class Split:
    """uint8 images (N, 3, 32, 32) and their 0/1 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class Cifar2Data:
    """cifar2 as tensors: the fit/valid split of the training folder, the test folder, the classes."""

    fit: Split
    valid: Split
    test: Split
    classes: list[str]


def cifar2_checkpoint_path() -> Path:
    """Where the book keeps its cifar2 recipe model: a separate file in fast mode."""
    return models_dir() / by_mode(full="cifar2_recipe.pt", fast="cifar2_recipe_fast.pt")


def cifar2_recipe_config() -> RecipeConfig:
    """The recipe's config for the book's cifar2 model; smaller batches, one thread on the sample."""
    return by_mode(full=RecipeConfig(), fast=RecipeConfig(epochs=15, batch_size=32, lr=0.05, threads=1))


def validation_split(n: int, n_valid: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 3's seeded hold-out: (fit_index, valid_index) of a random permutation of range(n)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_valid:], order[:n_valid]


def cifar2_data() -> Cifar2Data:
    """Load cifar2 train and test as uint8 tensors; hold out chapter 3's validation images."""
    images, labels, classes = load_image_folder_as_tensors(cifar2_folder("train"))
    test_images, test_labels, _ = load_image_folder_as_tensors(cifar2_folder("test"))
    fit_index, valid_index = validation_split(len(labels), by_mode(full=1000, fast=40))
    return Cifar2Data(fit=Split(images[fit_index], labels[fit_index]),
                      valid=Split(images[valid_index], labels[valid_index]),
                      test=Split(test_images, test_labels), classes=classes)


def augment_on_device(images: torch.Tensor, config: RecipeConfig,
                      device: torch.device) -> torch.Tensor:
    """A recipe training batch: copy the uint8 images to `device`, flip, crop, normalise there."""
    images = images.to(device, non_blocking=True)
    return prepare_batch(random_flip_crop(images, config.padding), device, config.channels_last)


class EpochLines(Callback):
    """Print the engine's progress line after every epoch of a Trainer (images/s, time left)."""

    def __init__(self, images_per_epoch: int, best: CheckpointCallback):
        self.images, self.best = images_per_epoch, best

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """Print the epoch's line, marking the best epoch so far."""
        done = [r["seconds"] for r in trainer.rows if r["epoch"] >= self.first]
        left = sum(done) / len(done) * (trainer.last_epoch - row["epoch"])
        line_row = row | {"images_per_s": self.images / row["seconds"]}
        print(epoch_line(line_row, trainer.last_epoch, self.best.best_epoch == row["epoch"],
                         left), flush=True)

    def on_fit_start(self, trainer: Trainer) -> None:
        """Remember the first epoch of this fit (a resumed run's time left counts from it)."""
        self.first = len(trainer.rows) + 1


def fit_cifar2_model(data: Cifar2Data, config: RecipeConfig, device: torch.device,
                     progress: bool = False, run: Optional[Path] = None
                     ) -> tuple[nn.Module, Trainer, CheckpointCallback]:
    """Chapter 3's run: the recipe under the Trainer on `fit`, best validation AUC restored.

    With `run`, a folder, every epoch is saved there and a broken run resumes from it.
    """
    seed_everything(config.seed)
    model = model_on_device(config, device)
    normalize = partial(prepare_batch, device=device, channels_last=config.channels_last)
    train_loader = TensorBatches(data.fit.images, data.fit.labels.float().unsqueeze(1),
                                 config.batch_size, shuffle=True, drop_last=True,
                                 transform=partial(augment_on_device, config=config,
                                                   device=device))
    valid_loader = TensorBatches(data.valid.images, data.valid.labels.float().unsqueeze(1),
                                 batch_size=500, transform=normalize)
    optimizer = make_optimizer(model, config)
    scheduler = warmup_cosine_schedule(optimizer, config.epochs * len(train_loader), config.warmup_fraction)
    meta = {"settings": config.to_dict(), "planned_epochs": config.epochs}
    best = (CheckpointCallback(monitor="valid_auc", mode="max") if run is None else
            CheckpointCallback(run / "best.pt", monitor="valid_auc", mode="max",
                               last_path=run / "last.pt", meta=meta))
    lines = [EpochLines(len(train_loader) * config.batch_size, best)] if progress else []
    trainer = Trainer(model, partial(smoothed_bce, smoothing=config.label_smoothing), optimizer,
                      device, scheduler, callbacks=[best, *lines], progress=False)
    done = 0
    if run is not None and resumable(run, meta):
        done = best.resume(trainer)
        print(f"resuming {run} after epoch {done}")
    with cpu_threads(config.threads):
        trainer.fit(train_loader, valid_loader, epochs=config.epochs - done)
    best.restore_best(model)
    return model, trainer, best


def train_cifar2_model(path: Path, device: torch.device, progress: bool = True) -> nn.Module:
    """Train the book's cifar2 model as chapter 3 does, test it once with TTA, save it to `path`."""
    config, data = cifar2_recipe_config(), cifar2_data()
    run = run_folder(path)
    prepare_run_folder(run, {"settings": config.to_dict(), "planned_epochs": config.epochs})
    model, trainer, best = fit_cifar2_model(data, config, device, progress, run)
    save_checkpoint(path, model, {
        "config": config.to_dict(), "classes": data.classes, "fast_mode": fast_mode(),
        "train_images": len(data.fit.labels), "best_epoch": best.best_epoch,
        "valid_metrics": evaluate(model, data.valid.images, data.valid.labels, device, tta=True),
        "test_metrics": evaluate(model, data.test.images, data.test.labels, device, tta=True),
        "history": trainer.history.to_dict(orient="list")})
    shutil.rmtree(run)
    return model


# --- the run folder a book model trains in: resumable after a kill, removed once it is saved ------

def run_folder(path: Path) -> Path:
    """Where the model saved at `path` trains: last.pt, best.pt, history.csv after each epoch."""
    return path.with_name(f"{path.stem}.run")


def resumable(run: Path, expected: dict) -> bool:
    """True if `run` holds a last.pt whose meta has `expected`'s values (same settings, epochs)."""
    try:
        meta = read_checkpoint(run / "last.pt")["meta"]
    except CheckpointError:
        return False
    return all(meta.get(key) == value for key, value in expected.items())


def prepare_run_folder(run: Path, expected: dict) -> bool:
    """Keep `run` if it can be resumed with `expected` (True), else empty it (False)."""
    resume = resumable(run, expected)
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True, exist_ok=True)
    return resume


def training_seconds(meta: dict) -> Optional[float]:
    """How long a saved book model trained: its `train_seconds`, else its history's sum."""
    if "train_seconds" in meta:
        return meta["train_seconds"]
    seconds = meta.get("history", {}).get("seconds") if isinstance(meta.get("history"), dict) \
        else None
    return round(sum(seconds), 1) if seconds else None


def saved_config(path: Path) -> Optional[dict]:
    """The config saved with the model at `path`, or None if there is no usable file."""
    try:
        return read_checkpoint(path)["meta"].get("config")
    except CheckpointError:
        return None


def stale_reason(path: Path, config: dict) -> Optional[str]:
    """Why the file at `path` must be trained again although it loads (another config), or None."""
    if path.exists() and saved_config(path) not in (None, config):
        return f"{path} was trained with another recipe config. "
    return None


def load_or_train(path: Path, model: nn.Module, train: Callable[[], nn.Module], what: str,
                  stale: Optional[str] = None) -> nn.Module:
    """`model` with the weights saved at `path`, or `train()` when there is no usable file.

    `stale`: a reason to train again although the file loads (e.g. another recipe config).
    """
    try:
        if stale:
            raise CheckpointError(stale)
        load_checkpoint(path, model)
        return model
    except CheckpointError as error:
        if path.exists():
            print(f"Training {what} again: {str(error).split('. ')[0]}.")
        return train()


def ready_for_inference(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """The model on `device` (channels-last if asked), in eval mode, with no .grad left over."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.zero_grad(set_to_none=True)  # a model just trained keeps its last step's .grad
    return model.eval()


def load_or_train_cifar2_model(device: Optional[torch.device] = None, progress: bool = True) -> nn.Module:
    """The book's cifar2 model, eval mode, on `device`, no .grad: loaded if saved, else trained."""
    device = device or get_device()
    path, config = cifar2_checkpoint_path(), cifar2_recipe_config()
    model = load_or_train(path, build_model(config),
                          lambda: train_cifar2_model(path, device, progress), "the cifar2 model",
                          stale_reason(path, config.to_dict()))
    return ready_for_inference(model, device, config.channels_last)


def cifar2_model_meta() -> dict:
    """The metadata saved with the book's cifar2 model (load or train it first)."""
    return read_checkpoint(cifar2_checkpoint_path())["meta"]


# --- chapter 8: the ten-class model ---------------------------------------------------------------

@dataclass
class Cifar10Data:
    """CIFAR-10 as uint8 tensors: fit/valid split of the training images, test images, classes."""

    fit: Split
    valid: Split
    test: Split
    classes: list[str]


@dataclass
class Cifar10Config:
    """Chapter 8's recipe: the chapter 7 ResNet with chapter 3's ideas, on ten classes."""

    depth: int = 20  # chosen on the validation split (benchmarks/README.md, "Ten classes")
    width: int = 16
    epochs: int = 18
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.15
    padding: int = 4
    channels_last: bool = True
    bfloat16: str = "auto"  # "auto": where it is fast (CUDA with bf16, CPUs with bf16 units); "on", "off"
    threads: Optional[int] = None  # CPU threads while training; None keeps torch's setting
    seed: int = 0

    def to_dict(self) -> dict:
        """The config as a plain JSON-ready dict."""
        return asdict(self)


def cifar10_checkpoint_path() -> Path:
    """Where the book keeps its ten-class ResNet: a separate file in fast mode."""
    return models_dir() / by_mode(full="cifar10_resnet.pt", fast="cifar10_resnet_fast.pt")


def cifar10_recipe_config() -> Cifar10Config:
    """The ten-class recipe; in fast mode two short epochs on one thread (a smoke run)."""
    return by_mode(full=Cifar10Config(),
                   fast=Cifar10Config(epochs=2, batch_size=64, lr=0.1, threads=1))


def cifar10_data(root: Optional[Path] = None) -> Cifar10Data:
    """Decode CIFAR-10 train and test once into uint8 tensors; hold out a seeded validation split.

    `root` is an ImageFolder root with train/ and test/ (default: the book's data, the sample in
    fast mode). A seeded tenth of the training images is held out: 5,000 (100 in fast mode).
    """
    train_dir = root / "train" if root is not None else cifar10_folder("train")
    test_dir = root / "test" if root is not None else cifar10_folder("test")
    images, labels, classes = load_image_folder_as_tensors(train_dir)
    test_images, test_labels, _ = load_image_folder_as_tensors(test_dir)
    fit_index, valid_index = validation_split(len(labels), max(1, len(labels) // 10))
    return Cifar10Data(fit=Split(images[fit_index], labels[fit_index]),
                       valid=Split(images[valid_index], labels[valid_index]),
                       test=Split(test_images, test_labels), classes=classes)


def build_cifar10_model(config: Cifar10Config) -> nn.Module:
    """The chapter 7 ResNet of the config's depth and width, with ten logits."""
    return resnet(config.depth, config.width, num_classes=10)


@torch.no_grad()
def predict_cifar10_proba(model: nn.Module, images: torch.Tensor,
                          device: Optional[torch.device] = None, tta: bool = True,
                          bf16: bool = False, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (N, 10) for uint8 images; `tta` averages with the mirror images."""
    device = torch.device(device or next(model.parameters()).device)
    channels_last = uses_channels_last(model)
    model.eval()
    probabilities = []
    for start in range(0, len(images), batch_size):
        x = prepare_batch(images[start:start + batch_size], device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            p = model(x).float().softmax(1)
            if tta:
                p = (p + model(x.flip(3)).float().softmax(1)) / 2
        probabilities.append(p.float().cpu())
    return torch.cat(probabilities) if probabilities else torch.empty(0, 10)


def cifar10_metrics(proba: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, cross-entropy and accuracy per class of probabilities (N, 10) against labels."""
    labels = labels.cpu()
    hits = (proba.argmax(1) == labels).float()
    per_class = [hits[labels == k].mean().item() if (labels == k).any() else float("nan")
                 for k in range(proba.shape[1])]
    loss = F.nll_loss(proba.clamp_min(1e-12).log(), labels).item()
    return {"accuracy": hits.mean().item(), "loss": loss, "per_class_accuracy": per_class}


def cifar10_settings(config: Cifar10Config) -> dict:
    """The engine's run settings for the ten-class recipe."""
    return {"model": f"resnet{config.depth}", "width": config.width,
            "batch_size": config.batch_size, "lr": config.lr, "momentum": config.momentum,
            "weight_decay": config.weight_decay, "warmup": config.warmup_fraction,
            "label_smoothing": config.label_smoothing, "valid_fraction": 0.1,
            "seed": config.seed, "bfloat16": config.bfloat16,
            "channels_last": config.channels_last}


def as_train_data(fit: Split, valid: Split, classes: list[str]) -> TrainData:
    """The engine's view of a fit/valid split."""
    return TrainData(fit.images, fit.labels, valid.images, valid.labels, classes)


def cifar10_checkpoint_meta(model: nn.Module, data: Cifar10Data, config: Cifar10Config,
                            run: dict, device: torch.device) -> dict:
    """What is saved with the ten-class model; the test split is used here, once, with TTA."""
    bf16 = run["bfloat16"]["enabled"]

    def metrics(split: Split) -> dict:
        proba = predict_cifar10_proba(model, split.images, device, tta=True, bf16=bf16)
        return cifar10_metrics(proba, split.labels)

    history = pd.DataFrame(run["history"])
    return {"config": config.to_dict(), "classes": data.classes, "fast_mode": fast_mode(),
            "train_images": len(data.fit.labels), "best_epoch": run["best_epoch"],
            "bfloat16": bf16, "bfloat16_choice": run["bfloat16"], "device": str(device),
            "train_seconds": round(float(history["seconds"].sum()), 1),
            "valid_metrics": metrics(data.valid), "test_metrics": metrics(data.test),
            "history": history.to_dict(orient="list")}


def train_with_engine(settings: dict, epochs: int, threads: Optional[int], data: TrainData,
                      model: nn.Module, device: torch.device, run: Path,
                      progress: bool = True) -> tuple[nn.Module, dict]:
    """Train `settings` with the engine in the folder `run`, resuming what is there; return
    `model` with the best epoch's weights, on `device`, and the run's meta."""
    resume = prepare_run_folder(run, {"settings": settings, "planned_epochs": epochs})
    with cpu_threads(threads):
        meta = train_run(settings, data, run, epochs, device, (CIFAR2_MEAN, CIFAR2_STD),
                         resume=resume, say=print if progress else lambda text: None,
                         extra_meta={"planned_epochs": epochs})
    load_checkpoint(run / "best.pt", model)
    model = model.to(device)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model, meta


def fit_cifar10_model(data: Cifar10Data, config: Cifar10Config, device: torch.device,
                      run: Path, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train the ten-class recipe in the folder `run`: the best model and the run's meta."""
    return train_with_engine(cifar10_settings(config), config.epochs, config.threads,
                             as_train_data(data.fit, data.valid, data.classes),
                             build_cifar10_model(config), device, run, progress)


def train_cifar10_model(path: Path, device: torch.device, progress: bool = True) -> nn.Module:
    """Train the book's ten-class ResNet, test it once with TTA, save it and its meta to `path`."""
    config, data = cifar10_recipe_config(), cifar10_data()
    model, run = fit_cifar10_model(data, config, device, run_folder(path), progress)
    save_checkpoint(path, model, cifar10_checkpoint_meta(model, data, config, run, device))
    shutil.rmtree(run_folder(path))
    return model


def load_or_train_cifar10_model(device: Optional[torch.device] = None,
                                progress: bool = True) -> nn.Module:
    """The book's ten-class ResNet in eval mode on `device`, no .grad: loaded if saved, else trained.

    A saved model trained with another recipe config is trained again, with a message.
    """
    device = device or get_device()
    path, config = cifar10_checkpoint_path(), cifar10_recipe_config()
    model = load_or_train(path, build_cifar10_model(config),
                          lambda: train_cifar10_model(path, device, progress=progress),
                          "the ten-class model", stale_reason(path, config.to_dict()))
    return ready_for_inference(model, device, config.channels_last)


def cifar10_model_meta() -> dict:
    """The metadata saved with the book's ten-class model (load or train it first)."""
    return read_checkpoint(cifar10_checkpoint_path())["meta"]


CIFAR2_CLASSES = ("airplane", "automobile")


@dataclass
class Cifar8Data:
    """CIFAR-10's training images without cifar2's classes: fit/valid splits, the eight classes."""

    fit: Split
    valid: Split
    classes: list[str]


def cifar8_backbone_path() -> Path:
    """Where the book keeps chapter 10's eight-class backbone: a separate file in fast mode."""
    return models_dir() / by_mode(full="cifar8_backbone.pt", fast="cifar8_backbone_fast.pt")


def cifar8_backbone_config() -> RecipeConfig:
    """The recipe's settings for the backbone: a few epochs (minutes on 2 CPU cores)."""
    return by_mode(full=RecipeConfig(epochs=3, lr=0.1),
                   fast=RecipeConfig(epochs=4, batch_size=32, lr=0.05, threads=1))


def cifar8_backbone_model() -> nn.Module:
    """The backbone's architecture: ResNet-8 of chapter 7, width 16, eight classes."""
    return resnet(depth=8, width=16, num_classes=8)


def without_classes(images: torch.Tensor, labels: torch.Tensor, classes: list[str],
                    dropped: tuple[str, ...]) -> tuple[Split, list[str]]:
    """The images of every class but `dropped`, labels renumbered 0..k-1; the kept classes."""
    missing = set(dropped) - set(classes)
    if missing:
        raise ValueError(f"no class {sorted(missing)} among {classes}")
    kept = [name for name in classes if name not in dropped]
    new_label = torch.tensor([kept.index(name) if name in kept else -1 for name in classes])
    relabelled = new_label[labels]
    keep = relabelled >= 0
    return Split(images[keep], relabelled[keep]), kept


def cifar8_data() -> Cifar8Data:
    """CIFAR-10's training folder without airplanes and automobiles, with a seeded hold-out."""
    images, labels, classes = load_image_folder_as_tensors(cifar10_folder("train"))
    split, kept = without_classes(images, labels, classes, CIFAR2_CLASSES)
    fit_index, valid_index = validation_split(len(split.labels), by_mode(full=2000, fast=80))
    return Cifar8Data(fit=Split(split.images[fit_index], split.labels[fit_index]),
                      valid=Split(split.images[valid_index], split.labels[valid_index]),
                      classes=kept)


def cifar8_settings(config: RecipeConfig) -> dict:
    """The engine's run settings for the backbone: ResNet-8, width 16, the recipe's values."""
    return {"model": "resnet8", "width": 16, "batch_size": config.batch_size, "lr": config.lr,
            "momentum": config.momentum, "weight_decay": config.weight_decay,
            "warmup": config.warmup_fraction, "label_smoothing": config.label_smoothing,
            "valid_fraction": 0.1, "seed": config.seed, "bfloat16": "off",
            "channels_last": config.channels_last}


def train_cifar8_backbone(path: Path, device: torch.device, progress: bool = True) -> nn.Module:
    """Train the eight-class backbone on its fit split, save it with its validation accuracy."""
    config, data = cifar8_backbone_config(), cifar8_data()
    model, run = train_with_engine(cifar8_settings(config), config.epochs, config.threads,
                                   as_train_data(data.fit, data.valid, data.classes),
                                   cifar8_backbone_model(), device, run_folder(path), progress)
    history = [{"epoch": row["epoch"], "valid_accuracy": row["valid_acc"]}
               for row in run["history"]]
    save_checkpoint(path, model, {
        "config": config.to_dict(), "classes": data.classes, "fast_mode": fast_mode(),
        "architecture": "resnet(depth=8, width=16, num_classes=8)",
        "train_images": len(data.fit.labels), "valid_images": len(data.valid.labels),
        "best_epoch": run["best_epoch"], "valid_accuracy": run["best_valid_acc"],
        "train_seconds": round(sum(row["seconds"] for row in run["history"]), 1),
        "history": history})
    shutil.rmtree(run_folder(path))
    return model


def load_or_train_cifar8_backbone(device: Optional[torch.device] = None,
                                  progress: bool = True) -> nn.Module:
    """Chapter 10's eight-class ResNet-8, eval mode, on `device`, no .grad: loaded, else trained."""
    device = device or get_device()
    path = cifar8_backbone_path()
    model = load_or_train(path, cifar8_backbone_model(),
                          lambda: train_cifar8_backbone(path, device, progress),
                          "the eight-class backbone",
                          stale_reason(path, cifar8_backbone_config().to_dict()))
    return ready_for_inference(model, device, channels_last=True)


def cifar8_backbone_meta() -> dict:
    """The metadata saved with the eight-class backbone (load or train it first)."""
    return read_checkpoint(cifar8_backbone_path())["meta"]


# --- make models: every model the chapters load, trained before they run ------------------------

@dataclass
class BookModel:
    """One of the book's trained models: what it is, where it is saved, how it is made."""

    chapter: str
    what: str
    path: Callable[[], Path]
    config: Callable[[], dict]
    load_or_train: Callable[..., nn.Module]


BOOK_MODELS = {
    "cifar2": BookModel("3", "the cifar2 recipe model (RecipeNet)", cifar2_checkpoint_path,
                        lambda: cifar2_recipe_config().to_dict(), load_or_train_cifar2_model),
    "cifar10": BookModel("8", "the ten-class ResNet", cifar10_checkpoint_path,
                         lambda: cifar10_recipe_config().to_dict(), load_or_train_cifar10_model),
    "cifar8": BookModel("10", "the eight-class backbone (ResNet-8)", cifar8_backbone_path,
                        lambda: cifar8_backbone_config().to_dict(),
                        load_or_train_cifar8_backbone),
}


def model_state(model: BookModel) -> str:
    """'present', 'missing', 'resumable' (a run folder to continue) or 'stale' (another config)."""
    path = model.path()
    saved = saved_config(path)
    if saved is not None:
        return "present" if saved == model.config() else "stale"
    return "resumable" if (run_folder(path) / "last.pt").is_file() else "missing"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line of `python -m torchbook.zoo` (`make models`)."""
    parser = argparse.ArgumentParser(
        prog="python -m torchbook.zoo",
        description="Train every model the book's chapters load (skipping those saved with "
                    "the current recipe); a stopped run resumes from its last complete epoch.")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"which models (default: all): {', '.join(BOOK_MODELS)}")
    parser.add_argument("--list", action="store_true", help="say what is saved, train nothing")
    parser.add_argument("--device", choices=CHOICES,
                        help="where to train (default: $BOOK_DEVICE, else auto)")
    return parser.parse_args(argv)


def build_models(names: Sequence[str], device: torch.device) -> None:
    """Load or train each named model, printing what happens and how long it took."""
    for name in names:
        model = BOOK_MODELS[name]
        state = model_state(model)
        where = model.path().relative_to(model.path().parents[1])
        if state == "present":
            print(f"{name}: {where} is present and matches its recipe; skipped", flush=True)
            continue
        print(f"{name}: training {model.what} for chapter {model.chapter} ({state}) on "
              f"{device.type}, {torch.get_num_threads()} threads", flush=True)
        start = time.perf_counter()
        model.load_or_train(device)
        print(f"{name}: saved {where} after {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`make models`: 0 when every model is ready, 2 for bad input, 130 when interrupted."""
    args = parse_args(argv)
    unknown = [name for name in args.models if name not in BOOK_MODELS]
    if unknown:
        print(f"error: no book model {', '.join(unknown)}; choose from "
              f"{', '.join(BOOK_MODELS)}.", file=sys.stderr)
        return 2
    names = args.models or list(BOOK_MODELS)
    if args.list:
        for name in names:
            print(f"{name:8} {model_state(BOOK_MODELS[name]):9} {BOOK_MODELS[name].path()}")
        return 0
    try:
        build_models(names, get_device(args.device))
    except (CheckpointError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run `make models` again to continue from the last complete epoch.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
