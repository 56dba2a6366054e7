"""Tests for torchbook.recipe: the book's fast CPU training recipe."""
from __future__ import annotations

import json
import math

import pytest
import torch

from torchbook.recipe import (RecipeConfig, RecipeNet, build_model, evaluate, make_optimizer,
                              make_scheduler, predict_proba, prepare_batch, race_summary,
                              smoothed_targets, train_recipe, uses_channels_last)
from torchbook.training import warmup_cosine_schedule

TINY = dict(widths=(8, 16, 16), threads=1)


def synthetic_images(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose class is visible: class 1 images are much redder than class 0 ones."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 150, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
    images[labels == 1, 0] += 100
    return images, labels


def test_model_gives_one_logit_per_image():
    model = build_model()
    assert isinstance(model, RecipeNet)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 1)


def test_model_accepts_other_widths_and_input_sizes():
    model = build_model(RecipeConfig(widths=(8, 16, 32)))
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 1)
    assert model.classifier.in_features == 32


def test_model_without_batch_norm_has_no_batch_norm_layers():
    with_bn = build_model(RecipeConfig(batch_norm=True))
    without = build_model(RecipeConfig(batch_norm=False))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in without.modules())
    assert without(torch.randn(2, 3, 32, 32)).shape == (2, 1)


def test_config_to_dict_is_json_ready():
    values = RecipeConfig(widths=(4, 8)).to_dict()
    assert values["widths"] == [4, 8]
    assert json.loads(json.dumps(values)) == values


def test_prepare_batch_normalises_and_can_be_channels_last():
    images = torch.full((2, 3, 8, 8), 128, dtype=torch.uint8)
    x = prepare_batch(images, torch.device("cpu"), channels_last=True)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 8, 8)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert abs(x.mean().item()) < 0.2  # 128/255 is close to the cifar2 mean


def test_smoothed_targets_pull_labels_towards_one_half():
    targets = smoothed_targets(torch.tensor([0, 1]), 0.1)
    assert targets.shape == (2, 1)
    assert torch.allclose(targets.view(-1), torch.tensor([0.05, 0.95]))


def test_make_scheduler_is_the_chapters_warmup_cosine_or_none():
    model = build_model(RecipeConfig(widths=(4, 8)))
    optimizer = make_optimizer(model, RecipeConfig())
    assert isinstance(make_scheduler(optimizer, RecipeConfig(), 100), type(warmup_cosine_schedule(optimizer, 100)))
    assert make_scheduler(optimizer, RecipeConfig(schedule="constant"), 100) is None
    with pytest.raises(ValueError, match="warmup_cosine"):
        make_scheduler(optimizer, RecipeConfig(schedule="step"), 100)


def test_train_recipe_follows_the_warmup_cosine_schedule():
    images, labels = synthetic_images(32)
    config = RecipeConfig(epochs=4, batch_size=8, lr=0.1, **TINY)
    _, history = train_recipe(images, labels, config)
    total = 4 * 4
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * (step - 4) / (total - 4))) for step in (4, 8, 12, 16)]
    assert history.lr.tolist() == pytest.approx(expected, abs=1e-9)


def test_recipe_learns_a_tiny_synthetic_problem():
    images, labels = synthetic_images(128)
    config = RecipeConfig(epochs=6, batch_size=32, lr=0.05, **TINY)
    model, history = train_recipe(images, labels, config)
    assert list(history.columns) == ["epoch", "train_loss", "train_accuracy", "lr", "seconds"]
    assert len(history) == 6
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    test_images, test_labels = synthetic_images(64, seed=1)
    assert evaluate(model, test_images, test_labels)["accuracy"] >= 0.9


def test_train_recipe_restores_the_thread_count():
    before = torch.get_num_threads()
    images, labels = synthetic_images(16)
    train_recipe(images, labels, RecipeConfig(epochs=1, batch_size=8, widths=(4, 4), threads=1))
    assert torch.get_num_threads() == before


def test_training_is_reproducible_with_the_same_seed():
    images, labels = synthetic_images(32)
    config = RecipeConfig(epochs=1, batch_size=16, **TINY)
    _, first = train_recipe(images, labels, config)
    _, second = train_recipe(images, labels, config)
    assert first.train_loss.tolist() == second.train_loss.tolist()


def test_predict_proba_with_flip_tta_averages_the_mirror_image():
    model = build_model(RecipeConfig(widths=(4, 8))).eval()
    images, _ = synthetic_images(10)
    plain = predict_proba(model, images, tta=False)
    mirrored = predict_proba(model, images.flip(3), tta=False)
    averaged = predict_proba(model, images, tta=True, batch_size=3)
    assert averaged.shape == (10,)
    assert ((averaged >= 0) & (averaged <= 1)).all()
    assert torch.allclose(averaged, (plain + mirrored) / 2, atol=1e-6)


def test_predict_proba_follows_the_model_memory_format():
    model = build_model(RecipeConfig(widths=(4, 8))).to(memory_format=torch.channels_last).eval()
    assert uses_channels_last(model)
    assert not uses_channels_last(build_model(RecipeConfig(widths=(4, 8))))
    images, _ = synthetic_images(4)
    assert predict_proba(model, images).shape == (4,)


def test_evaluate_reports_accuracy_and_auc_in_range():
    model = build_model(RecipeConfig(widths=(4, 8)))
    images, labels = synthetic_images(20)
    metrics = evaluate(model, images, labels)
    assert set(metrics) == {"accuracy", "auc"}
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["auc"] <= 1
    assert math.isnan(evaluate(model, images[:2], torch.tensor([1, 1]))["auc"])


def test_race_summary_words_the_committed_race_results():
    """Chapter 3's race paragraph carries the numbers of benchmarks/results/cifar2_race.json."""
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parents[1]
    race = json.loads((root / "benchmarks" / "results" / "cifar2_race.json").read_text())
    text = race_summary(race)
    for name in ("seed", "book"):
        recipe = race["recipes"][name]
        assert (f"test accuracy {recipe['test_accuracy']:.3f} "
                f"and ROC AUC {recipe['test_auc']:.4f} after {recipe['epochs']} epochs in {recipe['train_seconds']:.0f} s") in text
    assert f"trained {race['ratios']['time']:.1f} times as long" in text
    assert f"got {race['ratios']['error']:.1f} times as many test images wrong" in text
    seed, book = race["recipes"]["seed"], race["recipes"]["book"]
    assert race["ratios"]["time"] == pytest.approx(seed["train_seconds"] / book["train_seconds"],
                                                   abs=0.01)
    assert race["ratios"]["error"] == pytest.approx(
        (1 - seed["test_accuracy"]) / (1 - book["test_accuracy"]), abs=0.01)
    chapter = nbformat.read(root / "notebooks" / "03_training_loops.ipynb", as_version=4)
    code = "\n".join(c.source for c in chapter.cells if c.cell_type == "code")
    markdown = "\n".join(c.source for c in chapter.cells if c.cell_type == "markdown")
    assert "race_summary(race)" in code, "the chapter prints the race paragraph from the JSON"
    for recipe in (seed, book):
        for typed in (f"{recipe['test_accuracy']:.3f}", f"{recipe['test_auc']:.4f}",
                      f"{recipe['train_seconds']:.0f} s"):
            assert typed not in markdown, f"{typed} is typed in the prose: print it from the JSON"
