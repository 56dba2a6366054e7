"""Tests for torchbook.evaluation: epoch-level metrics, prediction and history plots."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, f1_score, precision_score, recall_score,
                             roc_auc_score)
from torch import nn

from taught_code import assert_taught_as_shipped
from torchbook import evaluation
from torchbook.datasets import decode_rgb
from torchbook.evaluation import (accuracy_from_logits, binary_metrics, bootstrap_ci,
                                  expected_calibration_error, mean_batch_auc, plot_history,
                                  predict_image, predict_logits, roc_auc)
from torchbook.recipe import RecipeConfig, model_on_device, predict_proba
from torchbook.settings import sample_dir

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


# --- chapter 4: metrics at a threshold, calibration, bootstrap, one image in -------------------

def random_scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """0/1 targets and probabilities that lean towards the right class."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, n)
    scores = np.clip(0.3 * targets + rng.uniform(0, 0.7, n), 0, 1)
    return targets, scores


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_binary_metrics_match_sklearn(threshold: float) -> None:
    """Counts of hits and false alarms give sklearn's accuracy, precision, recall and F1."""
    targets, scores = random_scores()
    answers = scores > threshold
    got = binary_metrics(targets, scores, threshold)
    assert got == pytest.approx({"accuracy": accuracy_score(targets, answers),
                                 "precision": precision_score(targets, answers),
                                 "recall": recall_score(targets, answers),
                                 "f1": f1_score(targets, answers)})


def test_binary_metrics_by_hand_and_without_positive_answers() -> None:
    """A small case counted by hand; no answer "class 1" gives precision, recall and F1 of 0."""
    targets = torch.tensor([1, 1, 1, 0, 0])
    scores = torch.tensor([0.9, 0.6, 0.2, 0.7, 0.1])  # tp 2, fn 1, fp 1, tn 1
    assert binary_metrics(targets, scores) == pytest.approx(
        {"accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert binary_metrics(targets, scores, threshold=0.95) == {
        "accuracy": 2 / 5, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def direct_ece(targets: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """ECE with explicit bin edges: bin k holds k/n < p <= (k+1)/n (and p = 0 in bin 0)."""
    total = 0.0
    for k in range(n_bins):
        low, high = k / n_bins, (k + 1) / n_bins
        inside = (probs > low) & (probs <= high) if k else (probs <= high)
        if inside.any():
            total += inside.sum() / len(probs) * abs(targets[inside].mean() - probs[inside].mean())
    return total


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_matches_a_direct_computation_and_sklearn_bins(n_bins: int) -> None:
    """The taught ECE equals an explicit loop, and the gaps of sklearn's calibration_curve."""
    targets, probs = random_scores(1000, seed=n_bins)
    ece = expected_calibration_error(targets, probs, n_bins)
    assert ece == pytest.approx(direct_ece(targets, probs, n_bins))
    share_true, mean_prob = calibration_curve(targets, probs, n_bins=n_bins)
    counts = np.histogram(probs, bins=np.linspace(0, 1, n_bins + 1))[0]
    weights = counts[counts > 0] / len(probs)
    assert ece == pytest.approx(np.sum(weights * np.abs(share_true - mean_prob)))
    assert ece > 0.01  # not calibrated: the comparison is not 0 == 0


def test_ece_of_calibrated_and_of_smoothed_probabilities() -> None:
    """0.25 where a quarter are class 1: no gap; always 0.95 (or 0.05) and always right: 0.05."""
    assert expected_calibration_error([1, 0, 0, 0] * 5, [0.25] * 20) == pytest.approx(0.0)
    assert expected_calibration_error([1] * 6 + [0] * 4, [0.95] * 6 + [0.05] * 4) \
        == pytest.approx(0.05)


def direct_bootstrap(metric, targets: np.ndarray, scores: np.ndarray, n: int, seed: int
                     ) -> tuple[float, float]:
    """The percentile bootstrap written out: n seeded resamples of pairs, one-class ones out."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        pick = rng.integers(0, len(targets), size=len(targets))
        if 0 < targets[pick].sum() < len(pick):
            values.append(metric(targets[pick], scores[pick]))
    values = np.sort(values)
    return tuple(np.interp([0.025 * (len(values) - 1), 0.975 * (len(values) - 1)],
                           np.arange(len(values)), values))


def accuracy_at_half(targets: np.ndarray, scores: np.ndarray) -> float:
    """Share of answers `score > 0.5` that are right."""
    return float(np.mean((scores > 0.5) == targets))


@pytest.mark.parametrize("metric", [roc_auc_score, accuracy_at_half])
def test_bootstrap_ci_matches_a_direct_computation(metric) -> None:
    """Same seed, same resamples: the 2.5 and 97.5 percentiles of the resampled metric."""
    targets, scores = random_scores(300)
    low, high = bootstrap_ci(metric, targets, scores, n=500, seed=3)
    assert (low, high) == pytest.approx(direct_bootstrap(metric, targets, scores, 500, 3))
    assert low < metric(targets, scores) < high
    assert bootstrap_ci(metric, targets, scores, n=500, seed=3) == (low, high)
    assert bootstrap_ci(metric, targets, scores, n=500, seed=4) != (low, high)


def test_bootstrap_ci_of_accuracy_has_the_binomial_width() -> None:
    """900 right answers of 1,000: the interval is about 0.9 +- 1.96 * sqrt(0.9 * 0.1 / 1000)."""
    targets = np.tile([0, 1], 500)
    scores = np.where(np.arange(1000) % 10 == 0, 1 - targets, targets).astype(float)
    low, high = bootstrap_ci(accuracy_at_half, targets, scores, n=2000)
    half_width = 1.96 * math.sqrt(0.9 * 0.1 / 1000)
    assert low == pytest.approx(0.9 - half_width, abs=0.004)
    assert high == pytest.approx(0.9 + half_width, abs=0.004)


def test_bootstrap_ci_skips_one_class_resamples_and_refuses_one_class_data() -> None:
    """Four pairs: many resamples hold one class, which AUC cannot score; one class: an error."""
    low, high = bootstrap_ci(roc_auc_score, [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], n=200)
    assert 0 <= low <= 0.75 <= high == 1.0
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_ci(roc_auc_score, [1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="one score per target"):
        bootstrap_ci(roc_auc_score, [0, 1, 1], [0.2, 0.5])


CLASSES = ["0_airplane", "1_automobile"]


def red_minus_blue_model() -> nn.Module:
    """A one-logit model whose logit is the mean red minus the mean blue (normalised) value."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0, 0.0, -1.0]]))
        model[2].bias.zero_()
    return model


def recipe_model() -> nn.Module:
    """The recipe's network (channels-last), seeded, BatchNorm statistics from a few batches."""
    torch.manual_seed(0)
    model = model_on_device(RecipeConfig(), torch.device("cpu"))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32))
    return model.eval()


def sample_image() -> Path:
    """One test image of the committed cifar2 sample (a 32 x 32 JPEG)."""
    return sorted((sample_dir() / "cifar2" / "test" / "1_automobile").glob("*.jpg"))[0]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_predict_image_on_a_file_agrees_with_predict_proba(tmp_path: Path, suffix: str) -> None:
    """A PNG or JPEG written from the sample: the probability predict_proba gives its pixels."""
    path = tmp_path / f"car{suffix}"
    Image.open(sample_image()).save(path)
    model = recipe_model()
    pixels = decode_rgb(path)
    for tta in (False, True):
        p = predict_proba(model, pixels.unsqueeze(0), tta=tta).item()
        name, prob = predict_image(model, path, CLASSES, tta=tta)
        assert (name, prob) == ((CLASSES[1], pytest.approx(p, abs=1e-5)) if p > 0.5
                                else (CLASSES[0], pytest.approx(1 - p, abs=1e-5)))
    assert predict_image(model, str(path), CLASSES) == predict_image(model, path, CLASSES)


def test_predict_image_answers_the_class_and_its_probability(tmp_path: Path) -> None:
    """For the red-minus-blue model a red image is class 1, a blue one class 0, from any input."""
    model = red_minus_blue_model().train()
    red = Image.new("RGB", (32, 32), (220, 30, 30))
    blue = Image.new("RGB", (32, 32), (30, 30, 220))
    red.save(tmp_path / "red.png")
    name, prob = predict_image(model, tmp_path / "red.png", CLASSES)
    x = evaluation.normalize_images(torch.tensor([220, 30, 30]).view(3, 1, 1))
    assert name == CLASSES[1] and prob == pytest.approx(torch.sigmoid(x[0] - x[2]).item())
    assert not model.training, "predict_image must put the model in eval mode"
    name, prob = predict_image(model, blue, CLASSES)
    assert name == CLASSES[0] and prob > 0.5
    assert predict_image(model, blue.convert("RGBA"), CLASSES) == (name, prob)
    assert predict_image(model, red, CLASSES, threshold=0.999)[0] == CLASSES[0]


def test_predict_image_resizes_other_sizes_to_32(tmp_path: Path) -> None:
    """A 96 x 64 image is resized to 32 x 32 first: same answer as the resized image given."""
    model = recipe_model()
    big = Image.open(sample_image()).convert("RGB").resize((96, 64))
    big.save(tmp_path / "big.png")
    small = big.resize((32, 32), Image.Resampling.BILINEAR)
    assert predict_image(model, tmp_path / "big.png", CLASSES) \
        == predict_image(model, small, CLASSES)


def test_predict_image_errors_say_what_is_wrong(tmp_path: Path) -> None:
    """A missing file, a file that is no image, a wrong input type, wrong classes: clear errors."""
    model = red_minus_blue_model()
    with pytest.raises(FileNotFoundError, match="no image file at .*missing.png"):
        predict_image(model, tmp_path / "missing.png", CLASSES)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="not an image file"):
        predict_image(model, tmp_path / "notes.txt", CLASSES)
    with pytest.raises(TypeError, match="file path or a PIL image"):
        predict_image(model, torch.zeros(3, 32, 32), CLASSES)
    with pytest.raises(ValueError, match="2 classes"):
        predict_image(model, Image.new("RGB", (32, 32)), ["cat", "dog", "ship"])


@pytest.mark.parametrize("name", ["binary_metrics", "expected_calibration_error", "bootstrap_ci",
                                  "open_rgb", "predict_image"])
def test_chapter_4_teaches_the_package_code(name: str) -> None:
    """The helpers chapter 4 teaches inline are the ones torchbook.evaluation ships."""
    assert_taught_as_shipped("04_evaluation", evaluation, name)
