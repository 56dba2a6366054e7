"""Tests for torchbook.zoo: the book's cifar2 model, loaded or trained like chapter 3 trains it."""
from __future__ import annotations

import pytest
import torch

import torchbook.zoo as trained
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
    monkeypatch.setattr(trained, "models_dir", lambda: tmp_path)
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

    monkeypatch.setattr(trained, "train_cifar2_model", no_training)
    again = load_or_train_cifar2_model(torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again(x))


def test_load_or_train_replaces_a_corrupt_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(trained, "models_dir", lambda: tmp_path)
    (tmp_path / "cifar2_recipe_fast.pt").write_bytes(b"garbage")
    monkeypatch.setattr(trained, "cifar2_recipe_config",
                        lambda: RecipeConfig(epochs=1, batch_size=64, threads=1))
    model = load_or_train_cifar2_model(torch.device("cpu"))
    assert "Training the cifar2 model again" in capsys.readouterr().out
    assert read_checkpoint(tmp_path / "cifar2_recipe_fast.pt")["model_class"] == type(model).__name__


def test_a_freshly_trained_model_comes_without_gradients(tmp_path, monkeypatch):
    """Training leaves the last step's .grad on the parameters; the model is handed back without."""
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(trained, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(trained, "cifar2_recipe_config",
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
    monkeypatch.setattr(trained, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(trained, "cifar10_recipe_config", lambda: TINY_CIFAR10)
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

    monkeypatch.setattr(trained, "train_cifar10_model", no_training)
    again = zoo.load_or_train_cifar10_model(torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again(x))


def test_cifar10_model_is_trained_again_for_another_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(trained, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(trained, "cifar10_recipe_config", lambda: TINY_CIFAR10)
    zoo.load_or_train_cifar10_model(torch.device("cpu"))
    other = zoo.Cifar10Config(epochs=1, batch_size=100, threads=1, lr=0.05)
    monkeypatch.setattr(trained, "cifar10_recipe_config", lambda: other)
    zoo.load_or_train_cifar10_model(torch.device("cpu"))
    assert "Training the ten-class model again" in capsys.readouterr().out
    assert zoo.cifar10_model_meta()["config"]["lr"] == 0.05


def test_cifar10_checkpoint_path_depends_on_the_mode(monkeypatch):
    monkeypatch.setenv("BOOK_FAST", "1")
    assert zoo.cifar10_checkpoint_path().name == "cifar10_resnet_fast.pt"
    monkeypatch.setenv("BOOK_FAST", "0")
    assert zoo.cifar10_checkpoint_path().name == "cifar10_resnet.pt"


def test_bf16_autocast_follows_the_config():
    cpu = torch.device("cpu")
    assert zoo.bf16_autocast_enabled(zoo.Cifar10Config(bfloat16="on"), cpu)
    assert not zoo.bf16_autocast_enabled(zoo.Cifar10Config(bfloat16="off"), cpu)
    auto = zoo.bf16_autocast_enabled(zoo.Cifar10Config(), cpu)
    assert auto == (zoo.cpu_bf16_hardware() is not None)
    assert not zoo.bf16_autocast_enabled(zoo.Cifar10Config(), torch.device("meta"))
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        zoo.bf16_autocast_enabled(zoo.Cifar10Config(bfloat16="yes"), cpu)


def test_cpu_bf16_hardware_names_what_torch_reports(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert zoo.cpu_bf16_hardware() is None
    assert not zoo.bf16_autocast_enabled(zoo.Cifar10Config(), torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert zoo.cpu_bf16_hardware() == "AVX512-BF16"
    assert zoo.bf16_autocast_enabled(zoo.Cifar10Config(), torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert zoo.cpu_bf16_hardware() == "AMX"


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
    monkeypatch.setattr(trained, "models_dir", lambda: tmp_path)
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
