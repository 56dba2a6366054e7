"""Tests for torchbook.evaluation: epoch-level metrics, prediction and history plots."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch
from torch import nn

from taught_code import assert_taught_as_shipped
from torchbook import evaluation
from torchbook.evaluation import (accuracy_from_logits, mean_batch_auc, plot_history, predict_logits,
                                  roc_auc)

matplotlib.use("Agg")

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "03_training_loops.ipynb"


def test_accuracy_uses_the_sign_of_the_logit() -> None:
    """Logit > 0 predicts class 1: here 3 of 4 answers are right."""
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    targets = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    assert accuracy_from_logits(logits, targets) == 0.75


def test_accuracy_accepts_flat_or_column_targets() -> None:
    """Targets of shape [B] and [B, 1], floats or ints, give the same accuracy."""
    logits = torch.tensor([[1.0], [1.0], [-1.0]])
    assert accuracy_from_logits(logits, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy_from_logits(logits, torch.tensor([[1.0], [0.0], [0.0]])) == pytest.approx(2 / 3)


def test_roc_auc_matches_a_hand_count() -> None:
    """AUC = share of (positive, negative) pairs ranked right: here 3 of 4 pairs."""
    scores = torch.tensor([0.9, 0.4, 0.6, 0.1])
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # pairs (pos, neg): (0.9, 0.6) ok, (0.9, 0.1) ok, (0.4, 0.6) wrong, (0.4, 0.1) ok
    assert roc_auc(scores, targets) == pytest.approx(0.75)


def test_roc_auc_is_the_same_for_logits_and_probabilities() -> None:
    """The sigmoid keeps the order of the logits, and AUC only depends on the order."""
    torch.manual_seed(0)
    logits, targets = torch.randn(50, 1), torch.randint(0, 2, (50, 1)).float()
    assert roc_auc(logits, targets) == pytest.approx(roc_auc(torch.sigmoid(logits), targets))


def test_roc_auc_of_one_class_is_nan() -> None:
    """With a single class the AUC is undefined: NaN rather than an exception."""
    assert math.isnan(roc_auc(torch.tensor([0.1, 0.7]), torch.tensor([1.0, 1.0])))


def test_mean_of_batch_aucs_differs_from_the_epoch_auc() -> None:
    """Two batches, each ranked perfectly, but on different scales: the batch mean says 1.0."""
    scores = torch.tensor([0.80, 0.90, 0.85, 0.95,   # batch 1: negatives 0.80, 0.85; positives higher
                           0.10, 0.20, 0.15, 0.25])  # batch 2: everything lower
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert mean_batch_auc(scores, targets, batch_size=4) == 1.0
    # positives 0.90 and 0.95 beat all 4 negatives; 0.20 and 0.25 beat only the 2 of batch 2
    assert roc_auc(scores, targets) == pytest.approx(12 / 16)


def test_mean_batch_auc_skips_one_class_batches() -> None:
    """Batches with one class have no AUC and are left out of the mean."""
    scores = torch.tensor([0.1, 0.2, 0.3, 0.9])
    targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert mean_batch_auc(scores, targets, batch_size=2) == 1.0
    assert math.isnan(mean_batch_auc(scores[:2], targets[:2], batch_size=2))


def test_predict_logits_collects_every_batch_in_eval_mode() -> None:
    """All outputs and targets, in loader order; dropout is off, so two calls agree."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10, 1)).float()
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    logits, targets = predict_logits(model, loader, "cpu")
    assert logits.shape == (10, 1) and torch.equal(targets, y)
    assert not model.training
    assert torch.allclose(logits, model(x))
    assert torch.equal(logits, predict_logits(model, loader, "cpu")[0])
    assert not logits.requires_grad


def test_plot_history_draws_train_and_valid_per_metric() -> None:
    """One titled, labelled panel per metric present, with a train and a valid line where both exist."""
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.5, 0.4], "valid_loss": [0.7, 0.6, 0.5],
                            "train_acc": [0.5, 0.7, 0.8], "valid_acc": [0.5, 0.6, 0.7],
                            "valid_auc": [0.6, 0.7, 0.8]})
    fig = plot_history(history, metrics=("loss", "acc", "auc", "missing"), title="run")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert [len(ax.get_lines()) for ax in axes] == [2, 2, 1]
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() == "epoch" and ax.get_ylabel()
    assert list(axes[2].get_lines()[0].get_ydata()) == [0.6, 0.7, 0.8]
    assert fig._suptitle.get_text() == "run"
    matplotlib.pyplot.close(fig)




@pytest.mark.parametrize("name", ["accuracy_from_logits", "roc_auc"])
def test_chapter_teaches_the_package_code(name: str) -> None:
    """The metrics chapter 3 teaches inline are the metrics torchbook.evaluation ships."""
    assert_taught_as_shipped("03_training_loops", evaluation, name)
