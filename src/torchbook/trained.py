"""The book's trained models: loaded when a chapter saved them, else trained the same way and saved.

`torchbook.checkpoints` is generic checkpoint I/O; this module sits above it and knows the book's
data and recipe, so that every chapter from 4 on runs alone, in any order, on Colab too.

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

import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from torchbook.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from torchbook.data import cifar2_folder, cifar10_folder
from torchbook.datasets import TensorBatches, load_image_folder_as_tensors, random_flip_crop
from torchbook.device import get_device
from torchbook.models import resnet
from torchbook.recipe import (RecipeConfig, build_model, evaluate, make_optimizer, model_on_device,
                              prepare_batch, smoothed_targets, uses_channels_last)
from torchbook.settings import by_mode, cpu_threads, fast_mode, models_dir, seed_everything
from torchbook.training import CheckpointCallback, Trainer, train_step, warmup_cosine_schedule

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


def smoothed_bce(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """BCE with logits against 0/1 targets pulled towards 1/2 by `smoothing`."""
    return F.binary_cross_entropy_with_logits(logits, smoothed_targets(targets, smoothing))


def fit_cifar2_model(data: Cifar2Data, config: RecipeConfig, device: torch.device,
                     progress: bool = False) -> tuple[nn.Module, Trainer, CheckpointCallback]:
    """Chapter 3's run: the recipe under the Trainer on `fit`, best validation AUC restored."""
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
    best = CheckpointCallback(monitor="valid_auc", mode="max")
    trainer = Trainer(model, partial(smoothed_bce, smoothing=config.label_smoothing), optimizer,
                      device, scheduler, callbacks=[best], progress=progress)
    with cpu_threads(config.threads):
        trainer.fit(train_loader, valid_loader, epochs=config.epochs)
    best.restore_best(model)
    return model, trainer, best


def train_cifar2_model(path: Path, device: torch.device, progress: bool = False) -> nn.Module:
    """Train the book's cifar2 model as chapter 3 does, test it once with TTA, save it to `path`."""
    config, data = cifar2_recipe_config(), cifar2_data()
    model, trainer, best = fit_cifar2_model(data, config, device, progress)
    save_checkpoint(path, model, {
        "config": config.to_dict(), "classes": data.classes, "fast_mode": fast_mode(),
        "train_images": len(data.fit.labels), "best_epoch": best.best_epoch,
        "valid_metrics": evaluate(model, data.valid.images, data.valid.labels, device, tta=True),
        "test_metrics": evaluate(model, data.test.images, data.test.labels, device, tta=True),
        "history": trainer.history.to_dict(orient="list")})
    return model


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


def load_or_train_cifar2_model(device: Optional[torch.device] = None, progress: bool = False) -> nn.Module:
    """The book's cifar2 model, eval mode, on `device`, no .grad: loaded if saved, else trained."""
    device = device or get_device()
    path, config = cifar2_checkpoint_path(), cifar2_recipe_config()
    model = load_or_train(path, build_model(config),
                          lambda: train_cifar2_model(path, device, progress), "the cifar2 model")
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


def cpu_bf16_hardware() -> Optional[str]:
    """The CPU's bfloat16 hardware that makes bf16 training fast: "AMX", "AVX512-BF16" or None."""
    for name, check in (("AMX", "_is_amx_tile_supported"),
                        ("AVX512-BF16", "_is_avx512_bf16_supported")):
        if getattr(torch.cpu, check, lambda: False)():
            return name
    return None


def bf16_autocast_enabled(config: Cifar10Config, device: torch.device) -> bool:
    """Whether to train and predict under bfloat16 autocast on `device` ("auto": where fast)."""
    if config.bfloat16 not in ("auto", "on", "off"):
        raise ValueError(f"bfloat16 must be 'auto', 'on' or 'off', not {config.bfloat16!r}")
    if config.bfloat16 != "auto":
        return config.bfloat16 == "on"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_hardware() is not None


def train_cifar10_epoch(model: nn.Module, data: Split, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler, config: Cifar10Config,
                        device: torch.device, bf16: bool) -> dict[str, float]:
    """One epoch of shuffled, augmented batches with cross-entropy on ten logits."""
    model.train()
    n, size = len(data.labels), config.batch_size
    order = torch.randperm(n)
    total_loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
    for start in range(0, n - size + 1, size):  # the last incomplete batch is dropped
        index = order[start:start + size]
        x = augment_on_device(data.images[index], config, device)
        y = data.labels[index].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.detach().cpu() * size
        correct += (logits.detach().argmax(1) == y).sum().cpu()
    seen = (n // size) * size
    return {"train_loss": total_loss.item() / seen, "train_acc": correct.item() / seen}


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


def fit_cifar10_model(data: Cifar10Data, config: Cifar10Config, device: torch.device,
                      progress: bool = False) -> tuple[nn.Module, pd.DataFrame, int]:
    """Train on `fit`, validate every epoch; return the best epoch's model, history and number."""
    seed_everything(config.seed)
    model = build_cifar10_model(config).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps = config.epochs * max(1, len(data.fit.labels) // config.batch_size)
    scheduler = warmup_cosine_schedule(optimizer, steps, config.warmup_fraction)
    bf16 = bf16_autocast_enabled(config, device)
    rows, best_state, best_epoch = [], None, 0
    with cpu_threads(config.threads):
        bar = tqdm(range(1, config.epochs + 1), desc="epochs", unit="epoch", disable=not progress)
        for epoch in bar:
            start, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
            row = {"epoch": epoch, **train_cifar10_epoch(model, data.fit, optimizer, scheduler,
                                                         config, device, bf16)}
            valid = cifar10_metrics(predict_cifar10_proba(model, data.valid.images, device,
                                                          tta=False, bf16=bf16), data.valid.labels)
            row.update(valid_loss=valid["loss"], valid_acc=valid["accuracy"], lr=lr,
                       seconds=time.perf_counter() - start)
            rows.append(row)
            bar.set_postfix(valid_acc=f"{row['valid_acc']:.3f}")
            if best_state is None or row["valid_acc"] > rows[best_epoch - 1]["valid_acc"]:
                best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, pd.DataFrame(rows), best_epoch


def cifar10_checkpoint_meta(model: nn.Module, data: Cifar10Data, config: Cifar10Config,
                            history: pd.DataFrame, best_epoch: int, device: torch.device,
                            train_seconds: float) -> dict:
    """What is saved with the ten-class model; the test split is used here, once, with TTA."""
    bf16 = bf16_autocast_enabled(config, device)

    def metrics(split: Split) -> dict:
        proba = predict_cifar10_proba(model, split.images, device, tta=True, bf16=bf16)
        return cifar10_metrics(proba, split.labels)

    return {"config": config.to_dict(), "classes": data.classes, "fast_mode": fast_mode(),
            "train_images": len(data.fit.labels), "best_epoch": best_epoch, "bfloat16": bf16,
            "device": str(device), "train_seconds": round(train_seconds, 1),
            "valid_metrics": metrics(data.valid), "test_metrics": metrics(data.test),
            "history": history.to_dict(orient="list")}


def train_cifar10_model(path: Path, device: torch.device, progress: bool = False) -> nn.Module:
    """Train the book's ten-class ResNet, test it once with TTA, save it and its meta to `path`."""
    config, data = cifar10_recipe_config(), cifar10_data()
    start = time.perf_counter()
    model, history, best_epoch = fit_cifar10_model(data, config, device, progress)
    meta = cifar10_checkpoint_meta(model, data, config, history, best_epoch, device,
                                   time.perf_counter() - start)
    save_checkpoint(path, model, meta)
    return model


def saved_cifar10_config(path: Path) -> Optional[dict]:
    """The config saved with the ten-class model at `path`, or None if there is no usable file."""
    try:
        return read_checkpoint(path)["meta"].get("config")
    except CheckpointError:
        return None


def load_or_train_cifar10_model(device: Optional[torch.device] = None,
                                progress: bool = False) -> nn.Module:
    """The book's ten-class ResNet in eval mode on `device`, no .grad: loaded if saved, else trained.

    A saved model trained with another recipe config is trained again, with a message.
    """
    device = device or get_device()
    path, config = cifar10_checkpoint_path(), cifar10_recipe_config()
    other_config = path.exists() and saved_cifar10_config(path) not in (None, config.to_dict())
    stale = f"{path} was trained with another recipe config. " if other_config else None
    model = load_or_train(path, build_cifar10_model(config),
                          lambda: train_cifar10_model(path, device, progress=progress),
                          "the ten-class model", stale)
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


@torch.no_grad()
def class_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   device: torch.device, batch_size: int = 500) -> float:
    """Share of uint8 images whose largest logit is their label's (a many-class model)."""
    model.eval()
    hits = 0
    for start in range(0, len(labels), batch_size):
        x = prepare_batch(images[start:start + batch_size], device)
        hits += (model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    return hits / len(labels)


def fit_cifar8_backbone(data: Cifar8Data, config: RecipeConfig,
                        device: torch.device) -> tuple[nn.Module, list[dict]]:
    """Train the backbone with the recipe (augmentation, SGD, warm-up + cosine, smoothing)."""
    seed_everything(config.seed)
    model = cifar8_backbone_model().to(device).to(memory_format=torch.channels_last)
    loader = TensorBatches(data.fit.images, data.fit.labels, config.batch_size, shuffle=True,
                           drop_last=True, transform=partial(augment_on_device, config=config,
                                                             device=device))
    optimizer = make_optimizer(model, config)
    scheduler = warmup_cosine_schedule(optimizer, config.epochs * len(loader),
                                       config.warmup_fraction)
    loss_fn = partial(F.cross_entropy, label_smoothing=config.label_smoothing)
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        for batch in loader:
            train_step(model, batch, loss_fn, optimizer, device)
            scheduler.step()
        history.append({"epoch": epoch, "valid_accuracy": class_accuracy(
            model, data.valid.images, data.valid.labels, device)})
    return model, history


def train_cifar8_backbone(path: Path, device: torch.device) -> nn.Module:
    """Train the eight-class backbone on its fit split, save it with its validation accuracy."""
    config, data = cifar8_backbone_config(), cifar8_data()
    with cpu_threads(config.threads):
        model, history = fit_cifar8_backbone(data, config, device)
    save_checkpoint(path, model, {
        "config": config.to_dict(), "classes": data.classes, "fast_mode": fast_mode(),
        "architecture": "resnet(depth=8, width=16, num_classes=8)",
        "train_images": len(data.fit.labels), "valid_images": len(data.valid.labels),
        "valid_accuracy": history[-1]["valid_accuracy"], "history": history})
    return model


def load_or_train_cifar8_backbone(device: Optional[torch.device] = None,
                                  progress: bool = False) -> nn.Module:
    """Chapter 10's eight-class ResNet-8, eval mode, on `device`, no .grad: loaded, else trained.

    `progress` is accepted for symmetry with the other loaders; the few epochs print nothing.
    """
    device = device or get_device()
    path = cifar8_backbone_path()
    model = load_or_train(path, cifar8_backbone_model(),
                          lambda: train_cifar8_backbone(path, device), "the eight-class backbone")
    return ready_for_inference(model, device, channels_last=True)


def cifar8_backbone_meta() -> dict:
    """The metadata saved with the eight-class backbone (load or train it first)."""
    return read_checkpoint(cifar8_backbone_path())["meta"]
