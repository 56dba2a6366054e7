"""Tests for torchbook.zoo: the book's cifar2 model, loaded or trained like chapter 3 trains it."""
from __future__ import annotations

import pytest
import torch

from torchbook import zoo
from torchbook.checkpoints import read_checkpoint
from torchbook.datasets import normalize_images, random_flip_crop
from torchbook.recipe import RecipeConfig, RecipeNet
from torchbook.zoo import cifar2_data, load_or_train_cifar2_model, validation_split


def test_validation_split_is_seeded_disjoint_and_complete():
    """The hold-out is the same every call, and fit + valid cover every index once."""
    fit, valid = validation_split(100, 10)
    again_fit, again_valid = validation_split(100, 10)
    assert torch.equal(fit, again_fit) and torch.equal(valid, again_valid)
    assert len(valid) == 10 and sorted(torch.cat([fit, valid]).tolist()) == list(range(100))


def test_cifar2_data_splits_the_sample_in_fast_mode(monkeypatch):
    """Fast mode: 160 fit, 40 valid of the sample's 200 training images, 40 test, two classes."""
    monkeypatch.setenv("BOOK_FAST", "1")
    data = cifar2_data()
    assert (len(data.fit.labels), len(data.valid.labels), len(data.test.labels)) == (160, 40, 40)
    assert data.fit.images.shape[1:] == (3, 32, 32) and data.fit.images.dtype == torch.uint8
    assert data.classes == ["0_airplane", "1_automobile"]
    assert set(data.valid.labels.tolist()) == {0, 1}


def test_load_or_train_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    model = load_or_train_cifar2_model(torch.device("cpu"))
    assert isinstance(model, RecipeNet) and not model.training
    path = tmp_path / "cifar2_recipe_fast.pt"
    meta = read_checkpoint(path)["meta"]
    assert meta["classes"] == ["0_airplane", "1_automobile"] and meta["fast_mode"] is True
    assert 0 <= meta["test_metrics"]["accuracy"] <= 1 and 0 <= meta["valid_metrics"]["auc"] <= 1
    assert meta["train_images"] == 160 and 1 <= meta["best_epoch"] <= len(meta["history"]["epoch"])
    assert {"valid_auc", "train_loss", "lr"} <= set(meta["history"])

    def no_training(*args, **kwargs):
        raise AssertionError("the saved model should have been loaded")

    monkeypatch.setattr(zoo, "train_cifar2_model", no_training)
    again = load_or_train_cifar2_model(torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again(x))


def test_load_or_train_replaces_a_corrupt_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    (tmp_path / "cifar2_recipe_fast.pt").write_bytes(b"garbage")
    monkeypatch.setattr(zoo, "cifar2_recipe_config",
                        lambda: RecipeConfig(epochs=1, batch_size=64, threads=1))
    model = load_or_train_cifar2_model(torch.device("cpu"))
    assert "Training the cifar2 model again" in capsys.readouterr().out
    assert read_checkpoint(tmp_path / "cifar2_recipe_fast.pt")["model_class"] == type(model).__name__


def test_a_freshly_trained_model_comes_without_gradients(tmp_path, monkeypatch):
    """Training leaves the last step's .grad on the parameters; the model is handed back without."""
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(zoo, "cifar2_recipe_config",
                        lambda: RecipeConfig(epochs=1, batch_size=64, threads=1))
    model = load_or_train_cifar2_model(torch.device("cpu"))
    assert (tmp_path / "cifar2_recipe_fast.pt").exists()  # it was trained here, not loaded
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_checkpoint_path_depends_on_the_mode(monkeypatch):
    monkeypatch.setenv("BOOK_FAST", "1")
    assert zoo.cifar2_checkpoint_path().name == "cifar2_recipe_fast.pt"
    monkeypatch.setenv("BOOK_FAST", "0")
    assert zoo.cifar2_checkpoint_path().name == "cifar2_recipe.pt"


def test_augment_on_device_copies_uint8_then_works_on_the_device():
    """The batch travels as uint8; flip, crop and normalisation run on the target device."""
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    on_meta = zoo.augment_on_device(images, RecipeConfig(), torch.device("meta"))
    assert on_meta.device.type == "meta" and on_meta.dtype == torch.float32  # ran there
    torch.manual_seed(0)
    out = zoo.augment_on_device(images, RecipeConfig(), torch.device("cpu"))
    torch.manual_seed(0)
    expected = normalize_images(random_flip_crop(images, 4))
    assert torch.equal(out, expected) and out.is_contiguous(memory_format=torch.channels_last)


# --- the ten-class model (chapter 8) --------------------------------------------------------------

TINY_CIFAR10 = zoo.Cifar10Config(epochs=1, batch_size=100, threads=1)


def test_cifar10_data_splits_the_sample_in_fast_mode(monkeypatch):
    """Fast mode: 900 fit, 100 valid of the sample's 1,000 training images, 200 test, ten classes."""
    monkeypatch.setenv("BOOK_FAST", "1")
    data = zoo.cifar10_data()
    assert (len(data.fit.labels), len(data.valid.labels), len(data.test.labels)) == (900, 100, 200)
    assert data.fit.images.shape[1:] == (3, 32, 32) and data.fit.images.dtype == torch.uint8
    assert data.classes == ["airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck"]
    assert set(data.valid.labels.tolist()) == set(range(10))
    fit = {tuple(image.flatten()[:64].tolist()) for image in data.fit.images}
    assert not any(tuple(image.flatten()[:64].tolist()) in fit for image in data.valid.images)


def test_cifar10_model_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(zoo, "cifar10_recipe_config", lambda: TINY_CIFAR10)
    model = zoo.load_or_train_cifar10_model(torch.device("cpu"))
    assert isinstance(model, zoo.nn.Module) and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    meta = zoo.cifar10_model_meta()
    assert meta["classes"][3] == "cat" and meta["fast_mode"] is True
    assert meta["config"] == TINY_CIFAR10.to_dict() and meta["train_images"] == 900
    assert meta["best_epoch"] == 1 and {"valid_acc", "train_loss", "lr"} <= set(meta["history"])
    for split in ("valid_metrics", "test_metrics"):
        assert 0 <= meta[split]["accuracy"] <= 1 and len(meta[split]["per_class_accuracy"]) == 10

    def no_training(*args, **kwargs):
        raise AssertionError("the saved model should have been loaded")

    monkeypatch.setattr(zoo, "train_cifar10_model", no_training)
    again = zoo.load_or_train_cifar10_model(torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again(x))


def test_cifar10_model_is_trained_again_for_another_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(zoo, "cifar10_recipe_config", lambda: TINY_CIFAR10)
    zoo.load_or_train_cifar10_model(torch.device("cpu"))
    other = zoo.Cifar10Config(epochs=1, batch_size=100, threads=1, lr=0.05)
    monkeypatch.setattr(zoo, "cifar10_recipe_config", lambda: other)
    zoo.load_or_train_cifar10_model(torch.device("cpu"))
    assert "Training the ten-class model again" in capsys.readouterr().out
    assert zoo.cifar10_model_meta()["config"]["lr"] == 0.05


def test_cifar10_checkpoint_path_depends_on_the_mode(monkeypatch):
    monkeypatch.setenv("BOOK_FAST", "1")
    assert zoo.cifar10_checkpoint_path().name == "cifar10_resnet_fast.pt"
    monkeypatch.setenv("BOOK_FAST", "0")
    assert zoo.cifar10_checkpoint_path().name == "cifar10_resnet.pt"


def test_predict_cifar10_proba_sums_to_one_and_tta_sees_the_mirror_image():
    torch.manual_seed(0)
    model = zoo.build_cifar10_model(zoo.Cifar10Config(depth=8, width=4)).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    proba = zoo.predict_cifar10_proba(model, images, torch.device("cpu"), batch_size=2)
    assert proba.shape == (3, 10) and torch.allclose(proba.sum(1), torch.ones(3))
    mirrored = zoo.predict_cifar10_proba(model, images.flip(3), torch.device("cpu"))
    assert torch.allclose(proba, mirrored, atol=1e-6)
    plain = zoo.predict_cifar10_proba(model, images, torch.device("cpu"), tta=False)
    assert not torch.allclose(proba, plain)


def test_cifar10_metrics_counts_hits_per_class():
    proba = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])
    metrics = zoo.cifar10_metrics(proba, torch.tensor([0, 1, 1, 2]))
    assert metrics["accuracy"] == 0.75 and metrics["per_class_accuracy"] == [1.0, 0.5, 1.0]
    expected = -(torch.tensor([0.9, 0.8, 0.4, 1.0]).log().mean()).item()
    assert abs(metrics["loss"] - expected) < 1e-6


def test_without_classes_drops_and_renumbers():
    """Dropping classes 0 and 1 of four leaves the others, renumbered 0 and 1, in order."""
    images = torch.arange(8).view(8, 1, 1, 1).to(torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    split, kept = zoo.without_classes(images, labels, ["a", "b", "c", "d"], ("a", "b"))
    assert kept == ["c", "d"] and split.labels.tolist() == [0, 1, 1, 0]
    assert split.images.view(-1).tolist() == [2, 3, 4, 5]


def test_without_classes_names_an_unknown_class():
    import pytest
    with pytest.raises(ValueError, match="airplane"):
        zoo.without_classes(torch.zeros(1, 1, 1, 1), torch.tensor([0]), ["cat"], ("airplane",))


def test_cifar8_backbone_never_sees_an_airplane_or_automobile(tmp_path, monkeypatch):
    """Fast mode: eight classes without cifar2's, trained once, saved, then loaded as is."""
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(zoo, "models_dir", lambda: tmp_path)
    data = zoo.cifar8_data()
    assert data.classes == ["bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert (len(data.fit.labels), len(data.valid.labels)) == (720, 80)
    assert set(data.fit.labels.tolist()) == set(range(8))
    model = zoo.load_or_train_cifar8_backbone(torch.device("cpu"))
    assert not model.training and all(p.grad is None for p in model.parameters())
    meta = zoo.cifar8_backbone_meta()
    assert meta["classes"] == data.classes and meta["train_images"] == 720
    assert 0.125 < meta["valid_accuracy"] <= 1  # better than chance on the sample
    stamp = (tmp_path / "cifar8_backbone_fast.pt").stat().st_mtime_ns
    again = zoo.load_or_train_cifar8_backbone(torch.device("cpu"))
    assert (tmp_path / "cifar8_backbone_fast.pt").stat().st_mtime_ns == stamp
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 model.state_dict().values()))


def test_load_or_train_loads_a_saved_file_and_trains_without_one(tmp_path, capsys) -> None:
    """A usable file is loaded (train not called); none, or a stale reason, calls train()."""
    from torch import nn

    from torchbook.checkpoints import save_checkpoint
    saved = nn.Linear(2, 1)
    save_checkpoint(tmp_path / "m.pt", saved)
    fresh = zoo.load_or_train(tmp_path / "m.pt", nn.Linear(2, 1), lambda: None, "a model")
    assert torch.equal(fresh.weight, saved.weight)
    marker = nn.Linear(2, 1)
    assert zoo.load_or_train(tmp_path / "none.pt", nn.Linear(2, 1), lambda: marker,
                                 "a model") is marker
    assert zoo.load_or_train(tmp_path / "m.pt", nn.Linear(2, 1), lambda: marker, "a model",
                                 stale="old config. more") is marker
    assert "Training a model again: old config." in capsys.readouterr().out


# --- make models (python -m torchbook.zoo) -----------------------------------------------------

def zoo_env(data_dir) -> dict:
    """Fast mode, a data folder of its own (the committed sample linked in), one thread."""
    import os
    from pathlib import Path

    data_dir.mkdir(parents=True, exist_ok=True)
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    (data_dir / "sample").symlink_to(sample)
    return {**os.environ, "BOOK_FAST": "1", "BOOK_DATA_DIR": str(data_dir),
            "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def make_models(env: dict, *names: str):
    """Run `python -m torchbook.zoo NAMES` to the end; the finished process."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "torchbook.zoo", *names], env=env,
                          capture_output=True, text=True, timeout=300)


def test_make_models_killed_mid_run_resumes_and_ends_with_an_unbroken_runs_weights(tmp_path):
    """SIGKILL once an epoch is saved; the rerun continues after the last complete epoch and
    saves the same weights as a run that was never stopped."""
    import signal
    import subprocess
    import sys
    import time

    env = zoo_env(tmp_path / "killed")
    run = tmp_path / "killed" / "models" / "cifar8_backbone_fast.run"
    process = subprocess.Popen([sys.executable, "-m", "torchbook.zoo", "cifar8"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "history.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_epoch = read_checkpoint(run / "last.pt")["meta"]["epoch"]
    assert 1 <= saved_epoch < 4, "the kill should land before the last of the 4 epochs"
    assert not (tmp_path / "killed" / "models" / "cifar8_backbone_fast.pt").exists()

    resumed = make_models(env, "cifar8")
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {saved_epoch}" in resumed.stdout
    epochs = [line.split()[1] for line in resumed.stdout.splitlines()
              if line.startswith("epoch ")]
    assert epochs == [f"{k}/4" for k in range(saved_epoch + 1, 5)]
    assert not run.exists()  # the run folder goes once the model is saved

    straight = make_models(zoo_env(tmp_path / "straight"), "cifar8")
    assert straight.returncode == 0, straight.stderr
    a = read_checkpoint(tmp_path / "killed" / "models" / "cifar8_backbone_fast.pt")
    b = read_checkpoint(tmp_path / "straight" / "models" / "cifar8_backbone_fast.pt")
    assert all(torch.equal(a["state_dict"][key], b["state_dict"][key]) for key in a["state_dict"])
    assert a["meta"]["history"] == b["meta"]["history"]


def test_make_models_skips_a_model_saved_with_its_recipe_and_lists_the_states(tmp_path):
    env = zoo_env(tmp_path / "data")
    first = make_models(env, "cifar8")
    assert first.returncode == 0 and "training the eight-class backbone" in first.stdout
    path = tmp_path / "data" / "models" / "cifar8_backbone_fast.pt"
    stamp = path.stat().st_mtime_ns
    again = make_models(env, "cifar8")
    assert again.returncode == 0 and "is present and matches its recipe; skipped" in again.stdout
    assert path.stat().st_mtime_ns == stamp
    listed = make_models(env, "--list").stdout.split("\n")
    assert [line.split()[:2] for line in listed if line] == [
        ["cifar2", "missing"], ["cifar10", "missing"], ["cifar8", "present"]]


def test_make_models_refuses_an_unknown_model_with_exit_2(tmp_path):
    result = make_models(zoo_env(tmp_path / "data"), "cifar3")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: no book model cifar3; choose from cifar2, cifar10, cifar8.\n"


class StopAfter(zoo.Callback):
    """Ctrl-C once `epoch` is saved (the checkpoint callback runs first)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, row: dict) -> None:
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_the_cifar2_run_resumes_exactly_from_its_run_folder(tmp_path, monkeypatch):
    """Chapter 3's Trainer run, stopped after epoch 5 and resumed, equals an unbroken run."""
    monkeypatch.setenv("BOOK_FAST", "1")
    config = RecipeConfig(epochs=8, batch_size=32, lr=0.05, threads=1)
    data, cpu = cifar2_data(), torch.device("cpu")
    original = zoo.Trainer.__init__

    def with_stop(self, *args, callbacks=(), **kwargs):
        original(self, *args, callbacks=[*callbacks, StopAfter(5)], **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(zoo.Trainer, "__init__", with_stop)
        with pytest.raises(KeyboardInterrupt):
            zoo.fit_cifar2_model(data, config, cpu, run=tmp_path / "stopped")
    assert read_checkpoint(tmp_path / "stopped" / "last.pt")["meta"]["epoch"] == 5
    resumed, trainer, _ = zoo.fit_cifar2_model(data, config, cpu, run=tmp_path / "stopped")
    straight, straight_trainer, _ = zoo.fit_cifar2_model(data, config, cpu)
    assert list(trainer.history["epoch"]) == list(range(1, 9))
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(),
                                                 straight.state_dict().values()))
    pd_columns = ["train_loss", "valid_loss", "valid_auc"]
    assert trainer.history[pd_columns].equals(straight_trainer.history[pd_columns])
