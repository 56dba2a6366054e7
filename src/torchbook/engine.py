"""The book's training engine: what trains every model of the book (chapters 7, 8, 10, 11).

Chapter 7's command line (`python -m torchbook.train`) is a thin layer over this module, and so
are the book's trained models (`torchbook.zoo`, `make models`), the distributed path (chapter 11)
and the races in `benchmarks/`. One run trains a CIFAR ResNet on uint8 images held in memory:

- batches in a seeded order (`EpochBatches`: each process takes its share under DDP), flipped,
  cropped and normalised on the device;
- SGD with Nesterov momentum under a per-step warm-up + cosine schedule, cross-entropy with label
  smoothing, bfloat16 autocast where it was measured faster (`choose_bfloat16`);
- after every epoch, the validation loss and accuracy, then `best.pt` (the best epoch's weights),
  `last.pt` (weights, optimizer, schedule and random states: `fit` resumes from it exactly) and
  `history.csv`, each written atomically, and one progress line: metrics, images per second and
  the time left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from torchbook.checkpoints import resume_checkpoint, save_checkpoint
from torchbook.datasets import normalize_images, random_flip_crop
from torchbook.distributed import (is_distributed, rank, sum_over_ranks, unwrap, world_size,
                                   wrap_ddp)
from torchbook.evaluate import classification_metrics
from torchbook.models import resnet_by_name
from torchbook.recipe import nesterov_sgd
from torchbook.training import warmup_cosine_schedule

# A run's settings: what the command line sets, what a resumed run must keep.
SETTINGS = {"model": "resnet20", "width": 16, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
            "weight_decay": 5e-4, "warmup": 0.1, "label_smoothing": 0.0,
            "valid_fraction": 0.1, "seed": 0, "bfloat16": "off", "channels_last": False}
BFLOAT16_CHOICES = ("auto", "on", "off")


@dataclass
class TrainData:
    """Training images as uint8 tensors, split into fit and validation images."""

    fit_images: torch.Tensor
    fit_labels: torch.Tensor
    valid_images: torch.Tensor
    valid_labels: torch.Tensor
    classes: list[str]


class EpochBatches:
    """(images, labels) batches of this process's share, reshuffled each epoch from seed + epoch.

    `batch_size` is the batch of one step over all processes; a short last batch is dropped.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
        self.images, self.labels = images, labels
        self.batch_size = batch_size // world_size()
        self.sampler = DistributedSampler(range(len(labels)), num_replicas=world_size(),
                                          rank=rank(), shuffle=True, seed=seed)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of `epoch` (the same on every process)."""
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.tensor(list(self.sampler))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images[index], self.labels[index]


def build_model(settings: dict, num_classes: int) -> nn.Module:
    """The ResNet the settings name, with one output per class."""
    return resnet_by_name(settings["model"], settings["width"], num_classes)


def wrap_model(model: nn.Module, device: torch.device, channels_last: bool = False) -> nn.Module:
    """The model as training calls it: on the device (channels-last if asked), DDP-wrapped."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return wrap_ddp(model, device) if is_distributed() else model


def make_optimizer(model: nn.Module, settings: dict) -> torch.optim.Optimizer:
    """The recipe's SGD (Nesterov momentum, no weight decay on biases and BatchNorm)."""
    return nesterov_sgd(model, settings["lr"], settings["momentum"], settings["weight_decay"])


def normalized(images: torch.Tensor, meta: dict, device: torch.device) -> torch.Tensor:
    """uint8 images on `device`, standardised with the run's mean and std (channels-last if set)."""
    x = normalize_images(images.to(device, non_blocking=True), meta["mean"], meta["std"])
    if meta["settings"].get("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment_batch(images: torch.Tensor, meta: dict, device: torch.device) -> torch.Tensor:
    """A training batch: uint8 images to the device, flipped and cropped, then normalised."""
    return normalized(random_flip_crop(images.to(device, non_blocking=True)), meta, device)


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               optimizer: torch.optim.Optimizer, meta: dict, device: torch.device,
               bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a uint8 batch; its loss and logits, detached."""
    x, y = augment_batch(images, meta, device), labels.to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y,
                           label_smoothing=meta["settings"]["label_smoothing"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(model: nn.Module, batches: EpochBatches, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, meta: dict, epoch: int,
                    device: torch.device, bf16: bool, bars_off: Optional[bool]) -> dict:
    """One pass over the batches, stepping the schedule each batch; mean loss and accuracy."""
    model.train()
    batches.set_epoch(epoch)
    total_loss = correct = torch.zeros((), device=device)
    count = 0
    bar = tqdm(total=len(batches) * batches.batch_size, desc=f"epoch {epoch}", unit="image",
               unit_scale=True, leave=False, disable=bars_off)  # images/s and time left
    for images, labels in batches:
        loss, logits = train_step(model, images, labels, optimizer, meta, device, bf16)
        scheduler.step()
        y = labels.to(device)
        total_loss = total_loss + loss * len(y)
        correct = correct + (logits.argmax(dim=1) == y).sum()
        count += len(y)
        bar.update(len(y))
    bar.close()
    if is_distributed():  # the images of every process count
        total_loss, correct = sum_over_ranks(total_loss), sum_over_ranks(correct)
        count = int(sum_over_ranks(torch.tensor(count, device=device)))
    return {"train_loss": (total_loss / count).item(), "train_acc": (correct / count).item(),
            "images": count}


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, meta: dict, device: torch.device,
                   bf16: bool = False, batch_size: int = 500) -> torch.Tensor:
    """The model's float32 logits (N, classes) for uint8 images, on the CPU."""
    model.eval()
    logits = []
    for start in range(0, len(images), batch_size):
        x = normalized(images[start:start + batch_size], meta, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits.append(model(x).float().cpu())
    return torch.cat(logits)


def validate(model: nn.Module, data: TrainData, meta: dict, device: torch.device,
             bf16: bool = False) -> dict:
    """Loss, accuracy (and AUC for two classes) on the validation images."""
    logits = predict_logits(unwrap(model), data.valid_images, meta, device, bf16)
    metrics = classification_metrics(logits, data.valid_labels, data.classes)
    names = {"loss": "valid_loss", "accuracy": "valid_acc", "auc": "valid_auc"}
    return {column: metrics[name] for name, column in names.items() if name in metrics}


def save_run_state(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, meta: dict,
                   best: bool, writer: bool = True) -> None:
    """Write best.pt (weights, when this epoch is the best), then last.pt (everything)."""
    if not writer:
        return
    if best:
        save_checkpoint(out / "best.pt", unwrap(model), meta)
    save_checkpoint(out / "last.pt", unwrap(model), meta, optimizer, scheduler)


def write_history(rows: list[dict], path: Path, writer: bool = True) -> None:
    """Write the history, one row per epoch, as CSV (replacing the file at once)."""
    if writer:
        tmp = path.with_name(f".{path.name}.tmp")
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(path)


def format_minutes(seconds: float) -> str:
    """'42 s' under two minutes, else '3.5 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def epoch_line(row: dict, epochs: int, best: bool, seconds_left: float) -> str:
    """One epoch's progress line: metrics, starting lr, time, images/s and the time left."""
    names = ["train_loss", "train_acc", "valid_loss", "valid_acc", "valid_auc"]
    values = "  ".join(f"{name} {row[name]:.4f}" for name in names if name in row)
    mark = "  (best)" if best else ""
    left = f", {format_minutes(seconds_left)} left" if seconds_left > 0 else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  {values}  lr {row['lr']:.4f}  "
            f"{row['seconds']:.1f} s ({row['images_per_s']:,.0f} images/s{left}){mark}")


def is_better(row: dict, meta: dict) -> bool:
    """True if this epoch's validation accuracy beats the best so far (the earlier wins ties)."""
    return meta["best_valid_acc"] is None or row["valid_acc"] > meta["best_valid_acc"]


def fit(model: nn.Module, batches: EpochBatches, data: TrainData,
        optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
        meta: dict, out: Path, epochs: int, device: torch.device, writer: bool = True,
        bars_off: Optional[bool] = None, say: Callable[[str], None] = print) -> None:
    """Train from the epoch after meta['epoch'] to `epochs`, saving the run after each."""
    bf16 = meta["bfloat16"]["enabled"]
    first = meta["epoch"] + 1
    for epoch in range(first, epochs + 1):
        start, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch}
        row |= train_one_epoch(model, batches, optimizer, scheduler, meta, epoch, device, bf16,
                               bars_off)
        row |= validate(model, data, meta, device, bf16)
        seconds = time.perf_counter() - start
        row |= {"lr": lr, "seconds": seconds, "images_per_s": row.pop("images") / seconds}
        best = is_better(row, meta)
        meta["history"].append(row)
        meta["epoch"] = epoch
        if best:
            meta["best_epoch"], meta["best_valid_acc"] = epoch, row["valid_acc"]
        save_run_state(out, model, optimizer, scheduler, meta, best, writer)
        write_history(meta["history"], out / "history.csv", writer)
        done = [r["seconds"] for r in meta["history"][first - 1:]]
        if writer:
            say(epoch_line(row, epochs, best, sum(done) / len(done) * (epochs - epoch)))


def apply_schedule(optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set each learning rate to the schedule's value at its step (a longer run's, on resume)."""
    for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs,
                                      scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(scheduler.last_epoch)


# --- bfloat16: chosen by timing it on this machine ------------------------------------------------

def steps_per_second(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, meta: dict,
                     device: torch.device, bf16: bool, steps: int) -> float:
    """Training steps per second of `model` on one batch (one untimed step first)."""
    optimizer = make_optimizer(model, meta["settings"])
    model.train()
    train_step(model, images, labels, optimizer, meta, device, bf16)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = train_step(model, images, labels, optimizer, meta, device, bf16)
    loss.item()  # waits for the device
    return steps / (time.perf_counter() - start)


def measure_bfloat16(model_factory: Callable[[], nn.Module], images: torch.Tensor,
                     labels: torch.Tensor, meta: dict, device: torch.device,
                     steps: int = 3, rounds: int = 2) -> dict:
    """Time training steps in float32 and under bfloat16 autocast, in alternating rounds;
    the best round's images per second of each (other work can only slow a round down)."""
    speeds = {"float32": 0.0, "bfloat16": 0.0}
    channels_last = meta["settings"].get("channels_last", False)
    models = {name: wrap_model(model_factory(), device, channels_last) for name in speeds}
    for _ in range(rounds):
        for name in speeds:
            rate = steps_per_second(models[name], images, labels, meta, device,
                                    name == "bfloat16", steps)
            speeds[name] = max(speeds[name], round(rate * len(labels), 1))
    return speeds


def bfloat16_possible(device: torch.device) -> bool:
    """Whether bfloat16 autocast can train on `device` at all (CPU, or CUDA with bf16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def choose_bfloat16(setting: str, measure: Callable[[], dict], device: torch.device,
                    margin: float = 1.1) -> dict:
    """Whether to train under bfloat16 autocast, and why: asked ('on'/'off') or measured ('auto').

    'auto' times both (`measure()`) and keeps bfloat16 only when it is at least `margin` times
    as fast as float32, so it never makes training slower.
    """
    if setting not in BFLOAT16_CHOICES:
        raise ValueError(f"bfloat16 must be one of {BFLOAT16_CHOICES}, not {setting!r}")
    if setting != "auto":
        return {"enabled": setting == "on", "how": f"asked ({setting})"}
    if not bfloat16_possible(device):
        return {"enabled": False, "how": f"auto: no bfloat16 training on {device.type}"}
    speeds = measure()
    faster = speeds["bfloat16"] >= margin * speeds["float32"]
    return {"enabled": faster, "how": "auto: measured", "images_per_s": speeds,
            "speedup": round(speeds["bfloat16"] / speeds["float32"], 2)}


def bfloat16_line(choice: dict) -> str:
    """One line saying whether bfloat16 is used, and the measured speeds when it was timed."""
    state = "bfloat16 autocast" if choice["enabled"] else "float32"
    if "images_per_s" not in choice:
        return f"training in {state} ({choice['how']})"
    speeds = choice["images_per_s"]
    return (f"training in {state}: measured {speeds['float32']:,.0f} images/s in float32, "
            f"{speeds['bfloat16']:,.0f} under bfloat16 autocast ({choice['speedup']:.2f}x)")


# --- a whole run ------------------------------------------------------------------------------------

def new_run_meta(settings: dict, data: TrainData, mean: Sequence[float],
                 std: Sequence[float]) -> dict:
    """What every checkpoint of a new run carries, so that evaluate needs nothing else."""
    depth = int(settings["model"].strip().lower().removeprefix("resnet"))
    return {"model": settings["model"], "depth": depth, "width": settings["width"],
            "classes": data.classes, "mean": list(mean), "std": list(std), "settings": settings,
            "config": {"model": settings["model"], "width": settings["width"],
                       "num_classes": len(data.classes)},
            "epoch": 0, "history": [], "best_epoch": None, "best_valid_acc": None}


def train_run(settings: dict, data: TrainData, out: Path, epochs: int, device: torch.device,
              mean_std: tuple[Sequence[float], Sequence[float]], resume: bool = False,
              writer: bool = True, bars_off: Optional[bool] = None,
              say: Callable[[str], None] = print, extra_meta: Optional[dict] = None) -> dict:
    """Train (or resume) one run in `out` up to `epochs`; return the last epoch's meta.

    `mean_std` normalises the images of a new run; a resumed run keeps its own.
    """
    torch.manual_seed(settings["seed"])
    model = wrap_model(build_model(settings, len(data.classes)), device,
                       settings.get("channels_last", False))
    optimizer = make_optimizer(model, settings)
    batches = EpochBatches(data.fit_images, data.fit_labels, settings["batch_size"],
                           settings["seed"])
    scheduler = warmup_cosine_schedule(optimizer, epochs * len(batches), settings["warmup"])
    if resume:
        meta = resume_checkpoint(out / "last.pt", unwrap(model), optimizer, scheduler)
        apply_schedule(optimizer, scheduler)
        say(f"resuming {out} after epoch {meta['epoch']}") if writer else None
    else:
        meta = new_run_meta(settings, data, *mean_std) | (extra_meta or {})
        meta["bfloat16"] = bfloat16_choice(settings, data, meta, device)
    if writer and meta["bfloat16"] != {"enabled": False, "how": "asked (off)"}:
        say(bfloat16_line(meta["bfloat16"]))  # said when bfloat16 was asked for or timed
    fit(model, batches, data, optimizer, scheduler, meta, out, epochs, device, writer,
        bars_off, say)
    return meta


def bfloat16_choice(settings: dict, data: TrainData, meta: dict, device: torch.device) -> dict:
    """The run's bfloat16 decision; 'auto' times a few steps on one batch of its own images."""
    size = min(settings["batch_size"] // world_size(), len(data.fit_labels))
    images, labels = data.fit_images[:size], data.fit_labels[:size]

    def measure() -> dict:
        state = torch.get_rng_state()  # timing must not change the run's random numbers
        try:
            return measure_bfloat16(lambda: build_model(settings, len(data.classes)), images,
                                    labels, meta, device)
        finally:
            torch.set_rng_state(state)

    choice = choose_bfloat16(settings.get("bfloat16", "off"), measure, device)
    if is_distributed():  # every process must train alike: bfloat16 only if all measured it faster
        votes = sum_over_ranks(torch.tensor(int(choice["enabled"]), device=device))
        choice["enabled"] = int(votes) == world_size()
    return choice
