"""Epoch-level metrics for a one-logit classifier (chapter 3), and a plot of training histories.

- `accuracy_from_logits`: share of correct answers, the logit's sign deciding the class.
- `roc_auc`: ROC AUC of logits or probabilities over a whole epoch (sklearn's `roc_auc_score`).
- `mean_batch_auc`: the biased alternative, the mean of per-batch AUCs (shown in chapter 3).
- `predict_logits`: run a model over a loader and collect every output and target.
- `plot_history`: train and validation curves of a history DataFrame, one panel per metric.

Chapter 4 (evaluating a classifier) adds, for scores that are probabilities of class 1:

- `binary_metrics`: accuracy, precision, recall and F1 of the answers `score > threshold`.
- `expected_calibration_error`: the gap between probabilities and frequencies, in equal-width bins.
- `bootstrap_ci`: a 95 % bootstrap confidence interval of any metric(targets, scores).
- `open_rgb`, `predict_image`: one image (a file or a PIL image) in, a class and its probability
  out.

Targets follow chapter 1's `to_float_target`: 0/1 floats of shape [B, 1] (shape [B] works too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from PIL import Image, UnidentifiedImageError
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.transforms.functional import pil_to_tensor

from torchbook.datasets import normalize_images

METRIC_NAMES = {"loss": "loss", "acc": "accuracy", "auc": "ROC AUC", "lr": "learning rate"}


def accuracy_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of images whose logit has the sign of their 0/1 target (logit > 0 means class 1)."""
    predictions = logits.reshape(-1) > 0
    return (predictions == (targets.reshape(-1).to(logits.device) > 0.5)).float().mean().item()


def roc_auc(logits_or_probs: torch.Tensor, targets: torch.Tensor) -> float:
    """ROC AUC over all images at once (NaN if only one class is present)."""
    targets = targets.reshape(-1).cpu().numpy()
    if len(set(targets.tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(targets, logits_or_probs.reshape(-1).float().cpu().numpy()))


def mean_batch_auc(scores: torch.Tensor, targets: torch.Tensor, batch_size: int) -> float:
    """The mean of per-batch ROC AUCs, skipping one-class batches: biased, for comparison only."""
    aucs = [roc_auc(scores[i:i + batch_size], targets[i:i + batch_size])
            for i in range(0, len(scores), batch_size)]
    aucs = [auc for auc in aucs if auc == auc]  # NaN != NaN: drop one-class batches
    return sum(aucs) / len(aucs) if aucs else float("nan")


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model in eval mode over batches (x, y); return all logits and targets (CPU)."""
    model.eval()
    logits, targets = [], []
    for x, y in loader:
        logits.append(model(x.to(device)))
        targets.append(y)
    return torch.cat(logits).cpu(), torch.cat(targets).cpu()


def plot_history(history: pd.DataFrame, metrics: Sequence[str] = ("loss", "acc", "auc"),
                 title: str | None = None) -> plt.Figure:
    """Plot a history's train_/valid_ columns per epoch, one titled, labelled panel per metric."""
    metrics = [m for m in metrics if {f"train_{m}", f"valid_{m}", m} & set(history.columns)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        name = METRIC_NAMES.get(metric, metric)
        columns = [c for c in (f"train_{metric}", f"valid_{metric}", metric) if c in history]
        for column in columns:
            ax.plot(history["epoch"], history[column], marker="o", markersize=3,
                    label=column.split("_")[0] if "_" in column else column)
        ax.set_title(f"{name} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def binary_metrics(targets: ArrayLike, scores: ArrayLike,
                   threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the answers `score > threshold` (class 1 positive)."""
    truth = np.asarray(targets).reshape(-1) > 0.5
    said = np.asarray(scores).reshape(-1) > threshold
    tp, fp = np.sum(said & truth), np.sum(said & ~truth)
    fn, tn = np.sum(~said & truth), np.sum(~said & ~truth)
    precision = tp / (tp + fp) if tp + fp else 0.0  # no answer "class 1": 0, as zero_division=0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((tp + tn) / len(truth)), "precision": float(precision),
            "recall": float(recall), "f1": float(f1)}


def expected_calibration_error(targets: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    """Mean |share of class 1 - mean probability| over equal-width bins, weighted by bin size."""
    truth = np.asarray(targets, dtype=float).reshape(-1)
    probs = np.asarray(probs, dtype=float).reshape(-1)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.digitize(probs, edges[1:-1], right=True)  # bin k: (k / n_bins, (k + 1) / n_bins]
    return float(sum(np.mean(bins == k) * abs(truth[bins == k].mean() - probs[bins == k].mean())
                     for k in np.unique(bins)))


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float], targets: ArrayLike,
                 scores: ArrayLike, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of metric(targets, scores), resampling (target, score) pairs."""
    targets, scores = np.asarray(targets).reshape(-1), np.asarray(scores).reshape(-1)
    if len(targets) != len(scores) or len(np.unique(targets)) < 2:
        raise ValueError("bootstrap_ci needs one score per target and both classes in the targets")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        index = rng.integers(0, len(targets), size=len(targets))
        if len(np.unique(targets[index])) > 1:  # skip one-class resamples: AUC needs both
            values.append(metric(targets[index], scores[index]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def open_rgb(image_or_path: str | Path | Image.Image) -> Image.Image:
    """An RGB PIL image from a PIL image or an image file, with a clear error for a bad path."""
    if isinstance(image_or_path, Image.Image):
        return image_or_path.convert("RGB")
    if not isinstance(image_or_path, (str, Path)):
        raise TypeError(f"expected an image file path or a PIL image, not {type(image_or_path)}")
    path = Path(image_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path} (a relative path starts in the "
                                f"current folder, {Path.cwd().name}/)")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except UnidentifiedImageError as error:
        raise ValueError(f"{path} is not an image file that PIL can read") from error


def predict_image(model: nn.Module, image_or_path: str | Path | Image.Image,
                  classes: Sequence[str], device: torch.device | str | None = None,
                  threshold: float = 0.5, tta: bool = False) -> tuple[str, float]:
    """Classify one image with a one-logit model: (class name, probability of that class)."""
    if len(classes) != 2:
        raise ValueError(f"a one-logit model answers one of 2 classes, not of {list(classes)}")
    image = open_rgb(image_or_path)
    if image.size != (32, 32):
        image = image.resize((32, 32), Image.Resampling.BILINEAR)  # the size the model knows
    x = normalize_images(pil_to_tensor(image)).unsqueeze(0)  # (1, 3, 32, 32), as prepare_batch
    model.eval()
    with torch.inference_mode():
        x = x.to(device or next(model.parameters()).device)  # default: the weights' device
        p = torch.sigmoid(model(x))
        if tta:
            p = (p + torch.sigmoid(model(x.flip(3)))) / 2  # dimension 3 is the width: mirror
    p = p.item()
    return (classes[1], p) if p > threshold else (classes[0], 1 - p)
