"""The book's fast CPU training recipe for cifar2 (taught in chapter 3, raced in benchmarks/).

What makes it fast and accurate on a laptop CPU, each idea measured in benchmarks/README.md:

- decode every image once into a uint8 tensor, then augment whole batches on tensors
  (random horizontal flip + padded random crop) instead of PIL per image;
- a small CNN with BatchNorm (conv-BN-ReLU blocks, widths 16-32-64, max-pooling), in
  channels-last memory format;
- SGD with Nesterov momentum under a warm-up + cosine schedule (chapter 3's
  `torchbook.training.warmup_cosine_schedule`: linear warm-up, then cosine decay to 0);
- label smoothing: one logit with smoothed BCE targets (y * (1 - eps) + eps / 2), which is exactly
  two logits with `CrossEntropyLoss(label_smoothing=eps)`, since softmax over two logits is the
  sigmoid of their difference;
- test-time augmentation: average the probabilities of each image and its mirror image.

Public API: `RecipeConfig`, `build_model`, `train_recipe`, `predict_proba`, `evaluate`; the pieces
chapter 3 assembles with its `Trainer`: `model_on_device`, `prepare_batch`, `smoothed_targets`,
`make_optimizer`, `make_scheduler`; `train_recipe` trains with chapter 3's `train_epoch`; `race_summary` words the committed race result.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from torchbook.datasets import TensorBatches, normalize_images, random_flip_crop
from torchbook.evaluation import accuracy_from_logits, roc_auc
from torchbook.settings import cpu_threads
from torchbook.training import train_epoch, warmup_cosine_schedule


@dataclass
class RecipeConfig:
    """Hyper-parameters of the book's recipe (the defaults are the benchmarked ones)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.25
    widths: Sequence[int] = (16, 32, 64)
    padding: int = 4
    channels_last: bool = True
    batch_norm: bool = True
    augment: bool = True
    schedule: str = "warmup_cosine"  # or "constant"
    threads: Optional[int] = None  # CPU threads while training; None keeps torch's setting
    seed: int = 0

    def to_dict(self) -> dict:
        """The config as a plain JSON-ready dict (widths as a list)."""
        values = asdict(self)
        values["widths"] = list(self.widths)
        return values


def conv_bn(in_channels: int, out_channels: int, batch_norm: bool = True) -> nn.Sequential:
    """A 3x3 convolution (no bias: BatchNorm has one), BatchNorm and ReLU."""
    if not batch_norm:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                             nn.ReLU(inplace=True))
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class RecipeNet(nn.Module):
    """A small CNN: conv-BN-ReLU blocks, each followed by 2x2 max-pooling, then one logit."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64), num_outputs: int = 1,
                 batch_norm: bool = True):
        super().__init__()
        blocks, in_channels = [], 3
        for width in widths:
            blocks += [conv_bn(in_channels, width, batch_norm), nn.MaxPool2d(2)]
            in_channels = width
        self.features = nn.Sequential(*blocks, conv_bn(in_channels, in_channels, batch_norm))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_channels, num_outputs)
        self.widths = list(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def build_model(config: Optional[RecipeConfig] = None) -> RecipeNet:
    """Build the recipe's model (one logit) for `config` (default RecipeConfig())."""
    config = config or RecipeConfig()
    return RecipeNet(widths=config.widths, batch_norm=config.batch_norm)


def model_on_device(config: RecipeConfig, device: torch.device) -> RecipeNet:
    """A fresh recipe model on `device`, channels-last when the config asks for it."""
    model = build_model(config).to(device)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def prepare_batch(images: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> normalised float32 on `device`, channels-last if asked."""
    x = normalize_images(images.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def smoothed_targets(labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """0/1 labels -> BCE targets pulled towards 1/2 by `smoothing` (shape (N, 1))."""
    return labels.float().view(-1, 1) * (1 - smoothing) + smoothing / 2


def nesterov_sgd(model: nn.Module, lr: float, momentum: float,
                 weight_decay: float) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; no weight decay on BatchNorm and bias parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


def make_optimizer(model: nn.Module, config: RecipeConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser: `nesterov_sgd` with the config's lr, momentum and weight decay."""
    return nesterov_sgd(model, config.lr, config.momentum, config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: RecipeConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step schedule of `config.schedule`: "warmup_cosine", or None for "constant"."""
    if config.schedule == "constant":
        return None
    if config.schedule != "warmup_cosine":
        raise ValueError(f"schedule must be 'warmup_cosine' or 'constant', not {config.schedule!r}")
    return warmup_cosine_schedule(optimizer, total_steps, config.warmup_fraction)


def train_recipe(train_images: torch.Tensor, train_labels: torch.Tensor,
                 config: Optional[RecipeConfig] = None, device: Optional[torch.device] = None,
                 progress: bool = False) -> tuple[RecipeNet, pd.DataFrame]:
    """Train the recipe's model on uint8 images (N, 3, H, W) and 0/1 labels; return it and its history."""
    config = config or RecipeConfig()
    with cpu_threads(config.threads):
        return _train_recipe(train_images, train_labels, config, torch.device(device or "cpu"), progress)


def smoothed_bce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """BCE with logits against 0/1 labels pulled towards 1/2 by `smoothing`."""
    return F.binary_cross_entropy_with_logits(logits, smoothed_targets(labels, smoothing))


def recipe_batch(images: torch.Tensor, config: RecipeConfig, device: torch.device,
                 generator: Optional[torch.Generator]) -> torch.Tensor:
    """A training batch: flipped and cropped (if the config augments), normalised on `device`."""
    if config.augment:
        images = random_flip_crop(images, config.padding, generator=generator)
    return prepare_batch(images, device, config.channels_last)


def _train_recipe(train_images: torch.Tensor, train_labels: torch.Tensor, config: RecipeConfig,
                  device: torch.device, progress: bool) -> tuple[RecipeNet, pd.DataFrame]:
    """`train_recipe`'s run: chapter 3's `train_epoch` over seeded, augmented batches."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = model_on_device(config, device)
    optimizer = make_optimizer(model, config)
    batches = TensorBatches(train_images, train_labels, min(config.batch_size, len(train_labels)),
                            shuffle=True, drop_last=True, generator=generator,
                            transform=partial(recipe_batch, config=config, device=device,
                                              generator=generator))
    scheduler = make_scheduler(optimizer, config, len(batches) * config.epochs)
    loss_fn = partial(smoothed_bce, smoothing=config.label_smoothing)
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="recipe", unit="epoch")
    rows = []
    for epoch in epochs:
        start = time.perf_counter()
        metrics = train_epoch(model, batches, loss_fn, optimizer, device, scheduler)
        rows.append({"epoch": epoch + 1, "train_loss": metrics["train_loss"],
                     "train_accuracy": metrics["train_acc"],
                     "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start})
    return model, pd.DataFrame(rows)


def uses_channels_last(model: nn.Module) -> bool:
    """True if the model's convolution weights are stored channels-last."""
    weights = [p for p in model.parameters() if p.ndim == 4]
    return bool(weights) and weights[0].is_contiguous(memory_format=torch.channels_last) \
        and not weights[0].is_contiguous()


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, device: Optional[torch.device] = None,
                  tta: bool = True, batch_size: int = 500) -> torch.Tensor:
    """Probability of class 1 for each uint8 image (N, 3, H, W); `tta` averages with the mirror image."""
    device = torch.device(device or next(model.parameters()).device)
    channels_last = uses_channels_last(model)
    model.eval()
    probabilities = []
    for start in range(0, len(images), batch_size):
        x = prepare_batch(images[start:start + batch_size], device, channels_last)
        p = torch.sigmoid(model(x))
        if tta:
            p = (p + torch.sigmoid(model(x.flip(3)))) / 2
        probabilities.append(p.view(-1).float().cpu())  # float32 even under bf16 autocast
    return torch.cat(probabilities) if probabilities else torch.empty(0)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             device: Optional[torch.device] = None, tta: bool = True) -> dict:
    """Test accuracy and ROC AUC (torchbook.evaluation) of the model on uint8 images and 0/1 labels."""
    proba = predict_proba(model, images, device, tta=tta)
    labels = labels.cpu()
    # a probability above 1/2 means class 1, as a logit above 0 does
    return {"accuracy": accuracy_from_logits(proba - 0.5, labels), "auc": roc_auc(proba, labels)}


def race_summary(race: dict) -> str:
    """The paragraph chapter 3 prints from benchmarks/results/cifar2_race.json (`make bench`)."""
    seed, book = race["recipes"]["seed"], race["recipes"]["book"]

    def result(recipe: dict) -> str:
        return (f"test accuracy {recipe['test_accuracy']:.3f} "
                f"and ROC AUC {recipe['test_auc']:.4f} after {recipe['epochs']} epochs "
                f"in {recipe['train_seconds']:.0f} s")

    return (f"The race ran on {race['device']}, {race['cpu_count']} CPUs, torch {race['torch']} "
            f"({race['date'][:10]}). The seed recipe reached {result(seed)}; the book's recipe "
            f"reached {result(book)}. The seed recipe trained {race['ratios']['time']:.1f} times "
            f"as long and got {race['ratios']['error']:.1f} times as many test images wrong.")
