"""Epoch-level metrics for a one-logit classifier (chapter 3), and a plot of training histories.

- `accuracy_from_logits`: share of correct answers, the logit's sign deciding the class.
- `roc_auc`: ROC AUC of logits or probabilities over a whole epoch (sklearn's `roc_auc_score`).
- `mean_batch_auc`: the biased alternative, the mean of per-batch AUCs (shown in chapter 3).
- `predict_logits`: run a model over a loader and collect every output and target.
- `plot_history`: train and validation curves of a history DataFrame, one panel per metric.

Targets follow chapter 1's `to_float_target`: 0/1 floats of shape [B, 1] (shape [B] works too).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

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
