"""Tests for torchbook.training: steps, epochs, train_model, Trainer and its callbacks."""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from taught_code import assert_taught_as_shipped
from torchbook import training
from torchbook.datasets import TensorBatches
from torchbook.recipe import RecipeConfig, make_optimizer, model_on_device, prepare_batch
from torchbook.settings import seed_everything
from torchbook.zoo import augment_on_device, smoothed_bce
from torchbook.training import (Callback, CheckpointCallback, LoggingCallback, Trainer, train_epoch,
                                train_model, train_step, valid_epoch, valid_step, warmup_cosine_schedule)

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "03_training_loops.ipynb"
COLUMNS = ["epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "valid_auc", "lr", "seconds"]
CPU = torch.device("cpu")


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable points: class 1 where x0 + x1 > 0, targets as [n, 1] floats."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=generator)
    y = (x.sum(dim=1, keepdim=True) > 0).float()
    return x, y


def toy_loader(n: int = 256, seed: int = 0, batch_size: int = 32, shuffle: bool = True):
    """A DataLoader over toy_data, shuffled with its own seeded generator."""
    x, y = toy_data(n, seed)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size,
                                       shuffle=shuffle, generator=generator)


def toy_model(seed: int = 0) -> nn.Module:
    """A tiny MLP with dropout (so that train/eval mode matters), one logit."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1))


def fit_toy(epochs: int = 8, seed: int = 0) -> pd.DataFrame:
    """Train the toy model with train_model, no progress bar."""
    model = toy_model(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    return train_model(model, toy_loader(seed=seed), toy_loader(128, seed=1, shuffle=False),
                       nn.BCEWithLogitsLoss(), optimizer, epochs, CPU, progress=False)


def test_train_step_updates_the_weights_and_returns_detached_tensors() -> None:
    """One step changes the parameters and lowers the loss on the same batch."""
    model = toy_model()
    batch = toy_data(64, 0)
    loss_fn, optimizer = nn.BCEWithLogitsLoss(), torch.optim.SGD(model.parameters(), lr=0.5)
    before = [p.clone() for p in model.parameters()]
    loss, logits = train_step(model, batch, loss_fn, optimizer, CPU)
    assert logits.shape == (64, 1) and loss.ndim == 0
    assert not loss.requires_grad and not logits.requires_grad
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    assert loss_fn(model(batch[0]), batch[1]) < loss


def test_valid_step_does_not_track_gradients_or_change_weights() -> None:
    """valid_step only computes: no graph, no update."""
    model = toy_model().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, logits = valid_step(model, toy_data(16, 0), nn.BCEWithLogitsLoss(), CPU)
    assert not loss.requires_grad and not logits.requires_grad
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_epoch_metrics_are_computed_over_the_whole_epoch() -> None:
    """valid_epoch's loss is the loss of all images at once, not a mean of unequal batches."""
    model = toy_model().eval()
    x, y = toy_data(100, 3)
    loader = [(x[:64], y[:64]), (x[64:], y[64:])]  # unequal batches: 64 and 36
    metrics = valid_epoch(model, loader, nn.BCEWithLogitsLoss(), CPU)
    with torch.no_grad():
        logits = model(x)
    assert metrics["valid_loss"] == pytest.approx(nn.BCEWithLogitsLoss()(logits, y).item(), rel=1e-6)
    assert metrics["valid_acc"] == pytest.approx(((logits > 0).float() == y).float().mean().item())
    assert set(metrics) == {"valid_loss", "valid_acc", "valid_auc"}


def test_train_epoch_sets_train_mode_and_steps_the_scheduler_every_batch() -> None:
    """The model trains in train mode, and a per-step schedule moves once per batch."""
    model = toy_model().eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    metrics = train_epoch(model, toy_loader(256, batch_size=64), nn.BCEWithLogitsLoss(), optimizer, CPU,
                          scheduler)
    assert model.training
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 ** 4)  # 256 / 64 = 4 steps
    assert set(metrics) == {"train_loss", "train_acc"}


def test_train_model_learns_a_separable_problem() -> None:
    """On linearly separable points the loss falls and validation accuracy exceeds 0.9."""
    history = fit_toy()
    assert list(history.columns) == COLUMNS
    assert history["epoch"].tolist() == list(range(1, 9))
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert history["valid_loss"].iloc[-1] < history["valid_loss"].iloc[0]
    assert history["valid_acc"].iloc[-1] > 0.9
    assert history["train_acc"].iloc[-1] > 0.9
    assert history["valid_auc"].iloc[-1] > 0.95
    assert (history["lr"] == 0.5).all() and (history["seconds"] > 0).all()


def test_two_seeded_runs_give_the_same_history() -> None:
    """Same seeds, same history (up to the wall time); another seed, another history."""
    first, second, other = fit_toy(3, seed=0), fit_toy(3, seed=0), fit_toy(3, seed=5)
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    assert not first["train_loss"].equals(other["train_loss"])


def test_trainer_fits_evaluates_and_predicts(capsys: pytest.CaptureFixture) -> None:
    """Trainer learns the toy problem, logs each epoch, and continues its history on a second fit."""
    model = toy_model()
    trainer = Trainer(model, nn.BCEWithLogitsLoss(), torch.optim.SGD(model.parameters(), lr=0.5),
                      device="cpu", callbacks=[LoggingCallback(every=2)], progress=False)
    valid = toy_loader(128, seed=1, shuffle=False)
    history = trainer.fit(toy_loader(), valid, epochs=4)
    assert list(history.columns) == COLUMNS and len(history) == 4
    logged = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in logged] == ["2", "4"] and "valid_auc" in logged[0]
    history = trainer.fit(toy_loader(), valid, epochs=3)
    assert history["epoch"].tolist() == list(range(1, 8))
    metrics = trainer.evaluate(valid)
    assert set(metrics) == {"loss", "acc", "auc"} and metrics["acc"] > 0.9
    assert metrics["acc"] == pytest.approx(history["valid_acc"].iloc[-1])
    logits = trainer.predict(valid)
    assert logits.shape == (128, 1)


def test_checkpoint_callback_keeps_and_saves_the_best_state(tmp_path: Path) -> None:
    """The callback saves the weights of the best epoch by the monitored metric; they reload."""
    path = tmp_path / "models" / "best.pt"
    checkpoint = CheckpointCallback(path, monitor="valid_loss", mode="min")
    model = toy_model()
    trainer = Trainer(model, nn.BCEWithLogitsLoss(), torch.optim.SGD(model.parameters(), lr=0.5),
                      device="cpu", callbacks=[checkpoint], progress=False)
    valid = toy_loader(128, seed=1, shuffle=False)
    history = trainer.fit(toy_loader(), valid, epochs=5)
    best = history.loc[history["valid_loss"].idxmin()]
    assert checkpoint.best_epoch == best["epoch"] and checkpoint.best_score == best["valid_loss"]
    fresh = toy_model(seed=9)
    fresh.load_state_dict(torch.load(path, weights_only=True))  # a plain state_dict loads
    assert all(torch.equal(v, checkpoint.best_state[k]) for k, v in fresh.state_dict().items())
    fresh_trainer = Trainer(fresh, nn.BCEWithLogitsLoss(), torch.optim.SGD(fresh.parameters(), lr=0.5),
                            device="cpu", progress=False)
    assert fresh_trainer.evaluate(valid)["loss"] == pytest.approx(best["valid_loss"], rel=1e-6)


def test_checkpoint_callback_ignores_worse_and_nan_scores() -> None:
    """Only improvements count; NaN (e.g. AUC of a one-class set) never does."""
    checkpoint = CheckpointCallback(monitor="valid_auc")
    assert checkpoint.is_better(0.5)
    checkpoint.best_score = 0.8
    assert not checkpoint.is_better(0.7) and not checkpoint.is_better(float("nan"))
    assert checkpoint.is_better(0.9)
    with pytest.raises(ValueError):
        CheckpointCallback(mode="best")
    with pytest.raises(RuntimeError):
        CheckpointCallback().restore_best(toy_model())


def test_a_callback_can_stop_training_early() -> None:
    """Setting trainer.stop_training in on_epoch_end ends fit after that epoch."""

    class StopAfterTwo(Callback):
        def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
            trainer.stop_training = row["epoch"] >= 2

    model = toy_model()
    trainer = Trainer(model, nn.BCEWithLogitsLoss(), torch.optim.SGD(model.parameters(), lr=0.5),
                      device="cpu", callbacks=[StopAfterTwo()], progress=False)
    assert len(trainer.fit(toy_loader(), toy_loader(64, seed=1), epochs=10)) == 2


def test_warmup_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    """lr goes 0.1 * lr -> lr over the first quarter of the steps, then follows a cosine to 0."""
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.2)
    schedule = warmup_cosine_schedule(optimizer, total_steps=100, warmup_fraction=0.25)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.02) and max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 25
    assert lrs[-1] < 0.001 and all(a >= b for a, b in zip(lrs[25:], lrs[26:]))
    assert lrs[62] == pytest.approx(0.1, rel=0.05)  # half-way through the cosine: half the peak
    warmup = [0.2 * (0.1 + 0.9 * step / 25) for step in range(25)]
    cosine = [0.2 * 0.5 * (1 + math.cos(math.pi * (step - 25) / 75)) for step in range(25, 100)]
    assert lrs == pytest.approx(warmup + cosine)




def test_warmup_cosine_schedule_stays_at_zero_past_its_end() -> None:
    """Stepped past total_steps, the learning rate stays at 0 instead of rising again."""
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.2)
    schedule = warmup_cosine_schedule(optimizer, total_steps=10)
    for _ in range(15):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == 0.0 and schedule.total_steps == 10


def test_warmup_cosine_schedule_writes_nothing_to_stderr(capfd: pytest.CaptureFixture) -> None:
    """No warning from torch's schedulers (on torch 2.4 SequentialLR wrote one to stderr)."""
    import warnings

    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule = warmup_cosine_schedule(optimizer, total_steps=20)
        for _ in range(20):
            optimizer.step()
            schedule.step()
    assert capfd.readouterr().err == ""


def test_trainer_refuses_to_fit_past_the_end_of_its_schedule() -> None:
    """fit for more steps than the schedule has left is a clear error naming the schedule's length."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train = toy_loader()
    schedule = warmup_cosine_schedule(optimizer, total_steps=2 * len(train))
    trainer = Trainer(model, nn.BCEWithLogitsLoss(), optimizer, device="cpu", scheduler=schedule,
                      progress=False)
    trainer.fit(train, toy_loader(64, seed=1), epochs=2)
    with pytest.raises(ValueError, match=rf"0 of its {2 * len(train)} steps left"):
        trainer.fit(train, toy_loader(64, seed=1), epochs=1)
    assert len(trainer.history) == 2, "nothing was trained past the schedule"


@pytest.mark.parametrize("name", ["train_step", "valid_step", "train_epoch", "valid_epoch", "fit_epoch",
                                  "train_model", "warmup_cosine_schedule"])
def test_chapter_teaches_the_package_code(name: str) -> None:
    """The loop chapter 3 teaches inline is the loop torchbook.training ships."""
    assert_taught_as_shipped("03_training_loops", training, name)


# --- chapter 5: resuming a Trainer run from CheckpointCallback(last_path=...) ------------------

def small_recipe_trainer(*callbacks: Callback) -> tuple[Trainer, TensorBatches, TensorBatches]:
    """A seeded run of a small recipe model on random images, augmented from the global RNG."""
    config = RecipeConfig(widths=(4, 8), batch_size=16, lr=0.05)
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = (images[:, 0].float().mean(dim=(1, 2)) > 127).float().unsqueeze(1)
    train = TensorBatches(images[:48], labels[:48], 16, shuffle=True, drop_last=True,
                          transform=partial(augment_on_device, config=config, device=CPU))
    valid = TensorBatches(images[48:], labels[48:], 16, transform=partial(prepare_batch, device=CPU))
    seed_everything(0)
    model = model_on_device(config, CPU)
    optimizer = make_optimizer(model, config)
    schedule = warmup_cosine_schedule(optimizer, 8 * len(train))
    trainer = Trainer(model, partial(smoothed_bce, smoothing=0.1), optimizer, CPU, schedule,
                      callbacks=list(callbacks), progress=False)
    return trainer, train, valid


def test_checkpoint_callback_resumes_a_run_exactly(tmp_path: Path) -> None:
    """4 epochs, stop, resume 4 more in a fresh trainer: the weights and history of 8 straight."""
    straight, train, valid = small_recipe_trainer()
    straight.fit(train, valid, epochs=8)

    paths = tmp_path / "best.pt", tmp_path / "last.pt"
    first, train, valid = small_recipe_trainer(
        CheckpointCallback(paths[0], last_path=paths[1], meta={"config": {"widths": [4, 8]}}))
    first.fit(train, valid, epochs=4)
    saved = torch.load(paths[1], weights_only=True)["meta"]
    assert saved["config"] == {"widths": [4, 8]} and saved["epoch"] == 4
    assert saved["history"] == first.rows
    checkpoint = CheckpointCallback(paths[0], last_path=paths[1])
    resumed, train, valid = small_recipe_trainer(checkpoint)
    torch.manual_seed(99)  # the new session's generators are restored by resume
    assert checkpoint.resume(resumed) == 4 and len(resumed.history) == 4
    assert checkpoint.best_epoch == int(first.history["valid_auc"].idxmax()) + 1
    resumed.fit(train, valid, epochs=4)
    assert all(torch.equal(value, resumed.model.state_dict()[name])
               for name, value in straight.model.state_dict().items())
    same = ["epoch", "train_loss", "valid_loss", "valid_auc", "lr"]
    assert straight.history[same].equals(resumed.history[same])
    best_epoch = int(straight.history["valid_auc"].idxmax()) + 1  # first epoch with the best AUC
    assert checkpoint.best_epoch == best_epoch
    assert all(torch.equal(v, torch.load(paths[0], weights_only=True)[k])
               for k, v in checkpoint.best_state.items())


def test_checkpoint_callback_resume_needs_its_files() -> None:
    with pytest.raises(ValueError, match="give `path`"):
        CheckpointCallback(last_path="last.pt")
    trainer, _, _ = small_recipe_trainer()
    with pytest.raises(ValueError, match="last_path"):
        CheckpointCallback().resume(trainer)


# --- chapter 9: the learning-rate range test ---------------------------------------------------

def sgd(params) -> torch.optim.Optimizer:
    """The optimizer the range tests below use (its lr is overwritten at every step)."""
    return torch.optim.SGD(params, lr=1.0, momentum=0.9)


def test_endless_batches_goes_on_past_the_loader_and_reshuffles() -> None:
    """Epoch after epoch of the loader's batches, in the loader's (new) order each time."""
    loader = toy_loader(n=64, batch_size=32)
    batches = training.endless_batches(loader)
    first = [next(batches)[0] for _ in range(2)]
    second = [next(batches)[0] for _ in range(2)]
    assert torch.equal(torch.cat(first).sort(dim=0).values, torch.cat(second).sort(dim=0).values)
    assert not all(torch.equal(a, b) for a, b in zip(first, second))  # shuffled again
    with pytest.raises(ValueError, match="no batch"):
        next(training.endless_batches([]))


def test_lr_range_test_raises_the_lr_geometrically_and_leaves_the_model_alone() -> None:
    """lr from start to end by a constant factor, finite losses, the model's weights unchanged."""
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = training.lr_range_test(model, toy_loader(), nn.BCEWithLogitsLoss(), CPU, sgd,
                                   start_lr=1e-4, end_lr=1e-1, steps=20, stop_factor=1e9)
    assert list(table.columns) == ["step", "lr", "loss", "smoothed_loss"]
    assert len(table) == 20 and table["step"].tolist() == list(range(20))  # 8 batches, 2.5 epochs
    ratios = table["lr"].iloc[1:].to_numpy() / table["lr"].iloc[:-1].to_numpy()
    assert np.allclose(ratios, 1000 ** (1 / 19))
    assert table["lr"].iloc[0] == pytest.approx(1e-4)
    assert table["lr"].iloc[-1] == pytest.approx(0.1)
    assert table["smoothed_loss"].iloc[0] == pytest.approx(table["loss"].iloc[0])  # bias corrected
    assert table["loss"].iloc[-5:].mean() < table["loss"].iloc[:5].mean()  # it did learn
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_lr_range_test_stops_when_the_loss_blows_up() -> None:
    """Rates up to 1e4 make SGD diverge: the test ends early, once the loss is 4x its best."""
    table = training.lr_range_test(toy_model(), toy_loader(), nn.BCEWithLogitsLoss(), CPU, sgd,
                                   start_lr=1e-3, end_lr=1e4, steps=200)
    assert len(table) < 200
    smoothed, best_so_far = table["smoothed_loss"], table["smoothed_loss"].cummin()
    assert not math.isfinite(smoothed.iloc[-1]) or smoothed.iloc[-1] > 4 * best_so_far.iloc[-1]
    assert (smoothed.iloc[:-1] <= 4 * best_so_far.iloc[:-1]).all()  # not a step earlier


def test_lr_range_test_says_what_is_wrong_with_its_range() -> None:
    for start, end, steps in [(0.1, 0.01, 10), (0.0, 1.0, 10), (1e-3, 1.0, 1)]:
        with pytest.raises(ValueError, match="start_lr < end_lr"):
            training.lr_range_test(toy_model(), toy_loader(), nn.BCEWithLogitsLoss(), CPU, sgd,
                                   start_lr=start, end_lr=end, steps=steps)


@pytest.mark.parametrize("name", ["endless_batches", "lr_range_test"])
def test_chapter_9_teaches_the_package_code(name: str) -> None:
    """The range test chapter 9 teaches inline is the one torchbook.training ships."""
    assert_taught_as_shipped("09_how_learning_works", training, name)
# --- chapter 10: fine-tuning with a frozen backbone and parameter groups -------------------------

def small_resnet() -> nn.Module:
    """A tiny CIFAR ResNet with BatchNorm everywhere, one logit."""
    from torchbook.models import resnet
    torch.manual_seed(0)
    return resnet(8, width=4, num_classes=1)


def test_train_except_frozen_keeps_frozen_batchnorm_statistics() -> None:
    """Frozen layers stay in eval mode: a training pass changes only the head, no running stats."""
    model = small_resnet()
    model.requires_grad_(False)
    model.fc.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.1)
    training.train_except_frozen(model)
    assert model.training and model.fc.training and not model.stem[1].training
    train_step(model, (torch.randn(8, 3, 32, 32), torch.rand(8, 1)),
               nn.BCEWithLogitsLoss(), optimizer, CPU)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["fc.weight", "fc.bias"]


def test_plain_train_mode_would_move_the_frozen_statistics() -> None:
    """The contrast: with model.train(), frozen BatchNorm layers still update running_mean."""
    model = small_resnet()
    model.requires_grad_(False)
    model.train()
    before = model.stem[1].running_mean.clone()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) + 3)
    assert not torch.equal(model.stem[1].running_mean, before)


def test_train_except_frozen_trains_everything_when_nothing_is_frozen() -> None:
    """Without frozen parameters it is model.train()."""
    model = training.train_except_frozen(small_resnet().eval())
    assert all(module.training for module in model.modules())


def test_head_and_backbone_groups_cover_every_parameter_once() -> None:
    """Two groups, the head's and the rest, with their own learning rates, no parameter twice."""
    model = small_resnet()
    groups = training.head_and_backbone_groups(model, "fc", lr=0.1, backbone_lr=0.01)
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    assert groups[1]["params"] == list(model.fc.parameters())
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    optimizer = torch.optim.SGD(groups, lr=1.0, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]


def test_head_and_backbone_groups_names_a_missing_head() -> None:
    """A head name the model does not have is an AttributeError that names it."""
    with pytest.raises(AttributeError, match="classifier"):
        training.head_and_backbone_groups(small_resnet(), "classifier", 0.1, 0.01)


@pytest.mark.parametrize("name", ["train_except_frozen", "head_and_backbone_groups"])
def test_chapter_10_teaches_the_package_code(name: str) -> None:
    """What chapter 10 teaches inline is what torchbook.training ships."""
    assert_taught_as_shipped("10_reusing_trained_models", training, name)
