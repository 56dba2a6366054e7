"""Training loops taught in chapter 3: step functions, `train_model`, and a small `Trainer`.

- `train_step`, `valid_step`: one batch, forward (and backward and update when training).
- `train_epoch`, `valid_epoch`: one pass over a loader, metrics over the whole epoch.
- `fit_epoch`, `train_model`: train and validate epoch after epoch; a pandas history, one row per
  epoch (epoch, train_loss, train_acc, valid_loss, valid_acc, valid_auc, lr, seconds).
- `warmup_cosine_schedule`: linear warm-up, then cosine decay, stepped after every batch (a
  `LambdaLR`, which behaves alike on every supported torch; `Trainer.fit` refuses to run past its end).
- `Trainer` with `Callback`s (`LoggingCallback`, `CheckpointCallback`): fit/evaluate/predict,
  used by later chapters; `CheckpointCallback(last_path=...)` makes a run resumable (ch. 5).
- `lr_range_test` (chapter 9): the loss while the learning rate grows step by step, to pick one.
- `train_except_frozen`, `head_and_backbone_groups`: fine-tuning a trained model (chapter 10):
  frozen layers stay in eval mode (BatchNorm keeps its statistics), and the backbone gets a lower
  learning rate than the new head.

A loader is any iterable of (x, y) batches. For the book's one-logit models, y holds 0/1 floats of
shape [B, 1], as chapter 1's `to_float_target` makes them. The loops never call `.item()` per step:
losses and logits stay tensors until the epoch ends.
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from torchbook.checkpoints import resume_checkpoint, save_checkpoint
from torchbook.device import get_device
from torchbook.evaluation import accuracy_from_logits, predict_logits, roc_auc

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_step(model: nn.Module, batch: Sequence[torch.Tensor], loss_fn: LossFn,
               optimizer: torch.optim.Optimizer,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch (x, y); return its loss and logits, detached."""
    x, y = batch[0].to(device), batch[1].to(device)
    logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


@torch.no_grad()
def valid_step(model: nn.Module, batch: Sequence[torch.Tensor], loss_fn: LossFn,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and logits of a batch (x, y), without gradients."""
    x, y = batch[0].to(device), batch[1].to(device)
    logits = model(x)
    return loss_fn(logits, y), logits


def train_epoch(model: nn.Module, loader: Iterable, loss_fn: LossFn,
                optimizer: torch.optim.Optimizer, device: torch.device,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> dict[str, float]:
    """Train on every batch of the loader once; return the epoch's loss and accuracy."""
    model.train()
    total_loss, logits, targets = 0.0, [], []
    for batch in loader:
        loss, batch_logits = train_step(model, batch, loss_fn, optimizer, device)
        if scheduler is not None:
            scheduler.step()  # schedules in this book change the learning rate every step
        total_loss += loss * len(batch_logits)  # a tensor: no wait for the device here
        logits.append(batch_logits)
        targets.append(batch[1])
    logits, targets = torch.cat(logits).cpu(), torch.cat(targets).cpu()
    return {"train_loss": (total_loss / len(logits)).item(),
            "train_acc": accuracy_from_logits(logits, targets)}


def valid_epoch(model: nn.Module, loader: Iterable, loss_fn: LossFn,
                device: torch.device) -> dict[str, float]:
    """Evaluate on every batch of the loader; return loss, accuracy and ROC AUC over the epoch."""
    model.eval()
    total_loss, logits, targets = 0.0, [], []
    for batch in loader:
        loss, batch_logits = valid_step(model, batch, loss_fn, device)
        total_loss += loss * len(batch_logits)
        logits.append(batch_logits)
        targets.append(batch[1])
    logits, targets = torch.cat(logits).cpu(), torch.cat(targets).cpu()
    return {"valid_loss": (total_loss / len(logits)).item(),
            "valid_acc": accuracy_from_logits(logits, targets),
            "valid_auc": roc_auc(logits, targets)}


def fit_epoch(model: nn.Module, train_loader: Iterable, valid_loader: Iterable,
              loss_fn: LossFn, optimizer: torch.optim.Optimizer, device: torch.device,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> dict[str, float]:
    """Train one epoch, then validate; return the metrics, the starting lr and the time."""
    start, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
    row = train_epoch(model, train_loader, loss_fn, optimizer, device, scheduler)
    row.update(valid_epoch(model, valid_loader, loss_fn, device))
    row.update(lr=lr, seconds=time.perf_counter() - start)
    return row


def train_model(model: nn.Module, train_loader: Iterable, valid_loader: Iterable,
                loss_fn: LossFn, optimizer: torch.optim.Optimizer, epochs: int,
                device: torch.device, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                progress: bool = True) -> pd.DataFrame:
    """Train and validate for `epochs` epochs; return the history, one row per epoch."""
    model.to(device)
    rows = []
    bar = tqdm(range(1, epochs + 1), desc="epochs", unit="epoch", disable=not progress)
    for epoch in bar:
        row = {"epoch": epoch}
        row.update(fit_epoch(model, train_loader, valid_loader, loss_fn, optimizer, device,
                             scheduler))
        bar.set_postfix(valid_auc=f"{row['valid_auc']:.3f}")
        rows.append(row)
    return pd.DataFrame(rows)


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                           warmup_fraction: float = 0.25, start_factor: float = 0.1
                           ) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up from start_factor * lr to lr, then cosine decay to 0."""
    warmup_steps = max(1, round(total_steps * warmup_fraction))
    decay_steps = max(1, total_steps - warmup_steps)

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return start_factor + (1 - start_factor) * step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    schedule.total_steps = total_steps  # the Trainer refuses to train past the end
    return schedule


def steps_left(scheduler: object) -> int | None:
    """Steps before a schedule with a `total_steps` ends (None for schedules without an end)."""
    total = getattr(scheduler, "total_steps", None)
    return None if total is None else total - scheduler.last_epoch


class Callback:
    """Base class of Trainer callbacks: override the hooks you need."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Called once when fit starts."""

    def on_epoch_end(self, trainer: "Trainer", row: dict) -> None:
        """Called after every epoch with that epoch's history row."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Called once when fit ends."""


class LoggingCallback(Callback):
    """Print one line of metrics every `every` epochs (and after the last one)."""

    def __init__(self, every: int = 1,
                 metrics: Sequence[str] = ("train_loss", "valid_loss", "valid_acc", "valid_auc")):
        self.every, self.metrics = every, tuple(metrics)

    def on_epoch_end(self, trainer: "Trainer", row: dict) -> None:
        """Print the epoch's metrics if it is one of the logged epochs."""
        if row["epoch"] % self.every == 0 or row["epoch"] == trainer.last_epoch:
            values = "  ".join(f"{name} {row[name]:.4f}" for name in self.metrics if name in row)
            print(f"epoch {row['epoch']:3d}  {values}")


class CheckpointCallback(Callback):
    """Keep the model's best state_dict by a monitored metric; also save it to `path` if given.

    With `last_path`, also save a full training checkpoint there after every epoch (weights,
    optimizer, scheduler, RNG states, history, and `meta` such as the config), from which
    `resume(trainer)` continues the run.
    """

    def __init__(self, path: str | Path | None = None, monitor: str = "valid_auc",
                 mode: str = "max", last_path: str | Path | None = None,
                 meta: Optional[dict] = None):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
        if last_path is not None and path is None:
            raise ValueError("a resumable run needs its best weights on disk too: give `path` "
                             "as well as `last_path`")
        self.path = Path(path) if path is not None else None
        self.last_path = Path(last_path) if last_path is not None else None
        self.meta = dict(meta or {})
        self.monitor, self.mode = monitor, mode
        self.best_score, self.best_epoch, self.best_state = None, None, None

    def is_better(self, score: float) -> bool:
        """True if `score` beats the best so far (NaN never does)."""
        if score != score:
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def on_epoch_end(self, trainer: "Trainer", row: dict) -> None:
        """Copy (and save) the model's weights when the monitored metric improves."""
        if self.is_better(row[self.monitor]):
            self.best_score, self.best_epoch = row[self.monitor], row["epoch"]
            state = trainer.model.state_dict()
            self.best_state = {k: v.detach().cpu().clone() for k, v in state.items()}
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f".{self.path.name}.tmp")
                torch.save(self.best_state, tmp)
                os.replace(tmp, self.path)  # atomic: a crash never leaves half a file behind
        if self.last_path is not None:
            meta = {**self.meta, "epoch": row["epoch"], "history": trainer.rows,
                    "best_epoch": self.best_epoch, "best_score": self.best_score}
            save_checkpoint(self.last_path, trainer.model, meta, trainer.optimizer,
                            trainer.scheduler)

    def resume(self, trainer: "Trainer") -> int:
        """Load the run saved at `last_path` into `trainer` and this callback; return its epoch."""
        if self.last_path is None:
            raise ValueError("nothing to resume from: create the callback with `last_path`")
        meta = resume_checkpoint(self.last_path, trainer.model, trainer.optimizer,
                                 trainer.scheduler)
        trainer.rows = [dict(row) for row in meta["history"]]
        self.best_score, self.best_epoch = meta["best_score"], meta["best_epoch"]
        if self.best_epoch is not None:
            self.best_state = torch.load(self.path, map_location="cpu", weights_only=True)
        return meta["epoch"]

    def restore_best(self, model: nn.Module) -> nn.Module:
        """Load the best weights seen into `model`; return it."""
        if self.best_state is None:
            raise RuntimeError("no checkpoint yet: fit the trainer first")
        model.load_state_dict(self.best_state)
        return model


class Trainer:
    """Fit, evaluate and predict with one model, loss and optimiser; callbacks see every epoch."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                 device: Optional[torch.device] = None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 callbacks: Sequence[Callback] = (), progress: bool = True):
        self.device = torch.device(device) if device is not None else get_device()
        self.model = model.to(self.device)
        self.loss_fn, self.optimizer, self.scheduler = loss_fn, optimizer, scheduler
        self.callbacks, self.progress = list(callbacks), progress
        self.rows: list[dict] = []
        self.last_epoch = 0
        self.stop_training = False  # a callback may set it to end fit early

    @property
    def history(self) -> pd.DataFrame:
        """Every epoch trained so far, one row each (fit can be called again to continue)."""
        return pd.DataFrame(self.rows)

    def fit(self, train_loader: Iterable, valid_loader: Iterable, epochs: int) -> pd.DataFrame:
        """Train for `epochs` more epochs, validating after each; return the whole history."""
        self.check_schedule(train_loader, epochs)
        self.stop_training = False
        first = len(self.rows) + 1
        self.last_epoch = first + epochs - 1
        for callback in self.callbacks:
            callback.on_fit_start(self)
        bar = tqdm(range(first, first + epochs), desc="epochs", unit="epoch",
                   disable=not self.progress)
        for epoch in bar:
            row = {"epoch": epoch}
            row.update(fit_epoch(self.model, train_loader, valid_loader, self.loss_fn,
                                 self.optimizer, self.device, self.scheduler))
            bar.set_postfix(valid_auc=f"{row['valid_auc']:.3f}")
            self.rows.append(row)
            for callback in self.callbacks:
                callback.on_epoch_end(self, row)
            if self.stop_training:
                break
        for callback in self.callbacks:
            callback.on_fit_end(self)
        return self.history

    def check_schedule(self, train_loader: Iterable, epochs: int) -> None:
        """Raise ValueError if `epochs` more epochs would run past the end of the schedule."""
        left = steps_left(self.scheduler)
        if left is None or not hasattr(train_loader, "__len__"):
            return
        needed = epochs * len(train_loader)
        if needed > left:
            raise ValueError(
                f"the learning-rate schedule has {left} of its {self.scheduler.total_steps} steps "
                f"left, but {epochs} epoch{'s' if epochs != 1 else ''} of {len(train_loader)} "
                f"batches need {needed}. Build a new schedule (and optimizer) for the extra "
                "epochs, or fit for fewer.")

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Loss, accuracy and ROC AUC on a loader, over all its batches."""
        metrics = valid_epoch(self.model, loader, self.loss_fn, self.device)
        return {name.removeprefix("valid_"): value for name, value in metrics.items()}

    def predict(self, loader: Iterable) -> torch.Tensor:
        """The model's logits for every batch of the loader, on the CPU."""
        return predict_logits(self.model, loader, self.device)[0]


def endless_batches(loader: Iterable) -> Iterator:
    """The loader's batches, epoch after epoch (reshuffled as the loader does), without end."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader gave no batch: it needs at least one")


def lr_range_test(model: nn.Module, loader: Iterable, loss_fn: LossFn, device: torch.device,
                  make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
                  start_lr: float = 1e-5, end_lr: float = 10.0, steps: int = 100,
                  smoothing: float = 0.05, stop_factor: float = 4.0) -> pd.DataFrame:
    """Train a copy of `model` with a learning rate rising from start_lr to end_lr; its losses.

    The rate grows by the same factor every step. One row per step: step, lr, loss and the
    smoothed loss (an exponential moving average); the test stops early once the smoothed loss
    is above stop_factor times its lowest value, or not finite. The model itself is unchanged.
    """
    if not 0 < start_lr < end_lr or steps < 2:
        raise ValueError(f"need 0 < start_lr < end_lr and steps >= 2, got start_lr={start_lr}, "
                         f"end_lr={end_lr}, steps={steps}")
    model = copy.deepcopy(model).to(device).train()
    optimizer = make_optimizer(model.parameters())
    batches, rows, average, best = endless_batches(loader), [], 0.0, math.inf
    for step in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(model, next(batches), loss_fn, optimizer, device)[0].item()
        average = smoothing * loss + (1 - smoothing) * average
        smoothed = average / (1 - (1 - smoothing) ** (step + 1))  # corrects the start at 0
        rows.append({"step": step, "lr": lr, "loss": loss, "smoothed_loss": smoothed})
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > stop_factor * best:
            break
    return pd.DataFrame(rows)


def train_except_frozen(model: nn.Module) -> nn.Module:
    """`model.train()`, but layers whose parameters are all frozen stay in eval mode."""
    model.train()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.eval()  # a frozen BatchNorm keeps (and uses) its running statistics
    return model


def head_and_backbone_groups(model: nn.Module, head: str, lr: float,
                             backbone_lr: float) -> list[dict]:
    """Parameter groups for an optimizer: submodule `head` at `lr`, the rest at `backbone_lr`."""
    head_params = list(model.get_submodule(head).parameters())
    in_head = {id(p) for p in head_params}
    backbone_params = [p for p in model.parameters() if id(p) not in in_head]
    return [{"params": backbone_params, "lr": backbone_lr}, {"params": head_params, "lr": lr}]
