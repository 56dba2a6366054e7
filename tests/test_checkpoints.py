"""Tests for torchbook.checkpoints: safe, generic saving and loading."""
from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch

import torchbook.checkpoints as checkpoints
from taught_code import assert_taught_as_shipped
from torchbook.checkpoints import (BestCheckpoints, CheckpointError, load_checkpoint, read_checkpoint,
                                   restore_rng_states, resume_checkpoint, rng_states, save_checkpoint,
                                   strip_prefix)
from torchbook.models import Net
from torchbook.recipe import RecipeConfig, build_model
from torchbook.settings import seed_everything

SMALL = RecipeConfig(widths=(4, 8))


def trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Give the model's parameters and BatchNorm statistics non-default values."""
    torch.manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor))
    return model.eval()


def test_round_trip_restores_weights_and_metadata(tmp_path):
    model = trained_looking(build_model(SMALL))
    path = save_checkpoint(tmp_path / "m.pt", model, {"config": SMALL.to_dict(), "metrics": {"auc": 0.99}})
    fresh = build_model(SMALL).eval()
    meta = load_checkpoint(path, fresh)
    assert meta == {"config": SMALL.to_dict(), "metrics": {"auc": 0.99}}
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model(x), fresh(x))
    assert path.stat().st_mode & 0o777 == 0o666 & ~checkpoints.current_umask()
    payload = torch.load(path, weights_only=True)
    assert payload["model_class"] == "RecipeNet" and payload["torch"] == str(torch.__version__)


def test_channels_last_model_round_trips(tmp_path):
    model = trained_looking(build_model(SMALL)).to(memory_format=torch.channels_last)
    path = save_checkpoint(tmp_path / "m.pt", model)
    fresh = build_model(SMALL).eval()
    load_checkpoint(path, fresh)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), fresh(x), atol=1e-5)


def test_loading_into_another_model_class_says_where_it_came_from(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(SMALL), {"config": SMALL.to_dict()})
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, Net())
    message = str(error.value)
    assert "saved from a RecipeNet" in message and "not a Net" in message
    assert "Build a RecipeNet" in message and "train a Net again" in message


def test_loading_into_a_different_architecture_says_what_to_do(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(SMALL), {"config": SMALL.to_dict()})
    with pytest.raises(CheckpointError, match="do not match.*size mismatch.*saved config"):
        load_checkpoint(path, build_model(RecipeConfig(widths=(8, 8))))


def test_missing_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at .*train the model and save it first"):
        load_checkpoint(tmp_path / "nothing.pt", build_model(SMALL))


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_corrupt_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or truncated: delete it and train again"):
        load_checkpoint(path, build_model(SMALL))


def test_truncated_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(SMALL))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_checkpoint(path)


def test_plain_state_dict_is_not_a_torchbook_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(build_model(SMALL).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a torchbook checkpoint"):
        load_checkpoint(path, build_model(SMALL))


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", build_model(SMALL), {"version": 1})
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, build_model(SMALL), {"version": 2})
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.pt", build_model(SMALL))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_metadata_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "m.pt", build_model(SMALL), {"device": torch.device("cpu")})
    assert not list(tmp_path.iterdir())


# --- chapter 5: training checkpoints, resuming, best k, prefixes, sharing ----------------------

def toy_run(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """A tiny model with dropout, Adam and a step schedule: every piece has state to restore."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)


def toy_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """One epoch that draws from torch, Python `random` and NumPy, as real runs do."""
    x = torch.randn(32, 4) + random.random() + float(np.random.rand())
    for index in torch.randperm(32).split(8):
        loss = torch.nn.functional.mse_loss(model(x[index]), x[index].sum(dim=1, keepdim=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()


def test_resume_checkpoint_continues_a_run_bit_for_bit(tmp_path):
    """4 epochs, save, resume into a fresh run, 4 more: the same weights as 8 epochs straight."""
    seed_everything(0)
    straight = toy_run()
    for _ in range(8):
        toy_epoch(*straight)

    seed_everything(0)
    first = toy_run()
    for _ in range(4):
        toy_epoch(*first)
    save_checkpoint(tmp_path / "run.pt", first[0], {"epoch": 4}, first[1], first[2])
    seed_everything(123)  # a new session, in another random state
    resumed = toy_run(seed=5)
    assert resume_checkpoint(tmp_path / "run.pt", *resumed) == {"epoch": 4}
    for _ in range(4):
        toy_epoch(*resumed)
    assert all(torch.equal(value, resumed[0].state_dict()[name])
               for name, value in straight[0].state_dict().items())
    assert resumed[1].param_groups[0]["lr"] == straight[1].param_groups[0]["lr"] == 0.0025


def test_rng_states_survive_a_weights_only_file(tmp_path):
    seed_everything(3)
    random.gauss(0, 1)  # Python keeps a second gaussian for the next call
    torch.save(rng_states(), tmp_path / "rng.pt")
    first = torch.rand(3), random.random(), random.gauss(0, 1), np.random.rand(2), np.random.randn()
    restore_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = torch.rand(3), random.random(), random.gauss(0, 1), np.random.rand(2), np.random.randn()
    assert torch.equal(first[0], again[0]) and first[1:3] == again[1:3]
    assert np.array_equal(first[3], again[3]) and first[4] == again[4]


def test_resume_without_a_saved_optimizer_says_what_to_do(tmp_path):
    model, optimizer, scheduler = toy_run()
    path = save_checkpoint(tmp_path / "weights.pt", model)
    with pytest.raises(CheckpointError, match="holds no optimizer state.*Pass optimizer= to save_checkpoint"):
        resume_checkpoint(path, model, optimizer)
    path = save_checkpoint(tmp_path / "no_schedule.pt", model, optimizer=optimizer)
    with pytest.raises(CheckpointError, match="holds no scheduler state"):
        resume_checkpoint(path, model, optimizer, scheduler)
    assert resume_checkpoint(path, model, optimizer) == {}


def test_chapter_3_call_still_saves_weights_and_meta_only(tmp_path):
    """save_checkpoint(path, model, meta) as chapter 3 calls it: no optimizer or scheduler state."""
    payload = torch.load(save_checkpoint(tmp_path / "m.pt", build_model(SMALL), {"a": 1}), weights_only=True)
    assert payload["meta"] == {"a": 1} and "optimizer" not in payload and "scheduler" not in payload


@pytest.mark.parametrize("mode, scores, kept", [
    ("max", [0.5, 0.9, 0.7, float("nan"), 0.8, 0.6, 0.9], [2, 5, 7]),
    ("min", [0.5, 0.9, 0.4, 0.45, 0.45, 0.3], [3, 4, 6]),
])
def test_best_checkpoints_keeps_only_the_k_best_files(tmp_path, mode, scores, kept):
    """Only the k best files stay; ties keep the earlier epoch; NaN is never saved."""
    best = BestCheckpoints(tmp_path / "best", k=3, metric="valid_auc", mode=mode)
    model = build_model(SMALL)
    for epoch, score in enumerate(scores, start=1):
        best.update(model, {"epoch": epoch, "valid_auc": score})
    files = sorted((tmp_path / "best").iterdir())
    assert [int(path.name[5:8]) for path in files] == kept
    assert len(best.kept) == 3 and set(files) == {path for _, _, path in best.kept}
    ranked = sorted(range(len(scores)), key=lambda i: (scores[i] if mode == "min" else -scores[i], i))
    assert read_checkpoint(best.best_path)["meta"]["metrics"]["epoch"] == ranked[0] + 1


def test_best_checkpoints_of_a_resumed_run_counts_the_files_already_there(tmp_path):
    """A new BestCheckpoints on the folder of an interrupted run keeps k files in all."""
    model = build_model(SMALL)
    first = BestCheckpoints(tmp_path, k=2, metric="valid_auc")
    for epoch, score in enumerate([0.6, 0.8, 0.7], start=1):
        first.update(model, {"epoch": epoch, "valid_auc": score})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    resumed = BestCheckpoints(tmp_path, k=2, metric="valid_auc")
    assert [epoch for _, epoch, _ in resumed.kept] == [2, 3]
    resumed.update(model, {"epoch": 3, "valid_auc": 0.7})  # epoch 3 trained again after a crash
    resumed.update(model, {"epoch": 4, "valid_auc": 0.9})
    assert sorted(p.name[:8] for p in tmp_path.glob("*.pt")) == ["epoch002", "epoch004"]
    assert resumed.best_path.name == "epoch004-valid_auc0.9000.pt"


def test_best_checkpoints_saves_a_resumable_checkpoint(tmp_path):
    model, optimizer, scheduler = toy_run()
    best = BestCheckpoints(tmp_path, k=1, metric="valid_loss", mode="min")
    assert best.best_path is None
    path = best.update(model, {"epoch": 1, "valid_loss": 0.25}, optimizer, scheduler)
    assert path == best.best_path and path.name == "epoch001-valid_loss0.2500.pt"
    assert best.update(model, {"epoch": 2, "valid_loss": 0.5}, optimizer, scheduler) is None
    assert resume_checkpoint(path, *toy_run())["metrics"] == {"epoch": 1, "valid_loss": 0.25}
    with pytest.raises(ValueError):
        BestCheckpoints(tmp_path, k=0)


def test_strip_prefix_loads_a_data_parallel_state_dict():
    model = trained_looking(build_model(SMALL))
    wrapped = torch.nn.DataParallel(model).state_dict()
    assert all(key.startswith("module.") for key in wrapped)
    fresh = build_model(SMALL).eval()
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict(wrapped)
    fresh.load_state_dict(strip_prefix(wrapped))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), fresh(x))
    assert list(strip_prefix({"a.w": 1, "module.b": 2}, "module.")) == ["a.w", "b"]


def test_safetensors_round_trip(tmp_path):
    """The chapter's way: contiguous tensors plus the config as string metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = trained_looking(build_model(SMALL)).to(memory_format=torch.channels_last)
    tensors = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(tensors, tmp_path / "m.safetensors", metadata={"config": json.dumps(SMALL.to_dict())})
    with safe_open(tmp_path / "m.safetensors", framework="pt") as handle:
        config = RecipeConfig(**json.loads(handle.metadata()["config"]))
    fresh = build_model(config).eval()
    fresh.load_state_dict(load_file(tmp_path / "m.safetensors"))
    assert all(torch.equal(value, fresh.state_dict()[name]) for name, value in model.state_dict().items())


def test_a_crash_halfway_through_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Half the bytes written, then an interrupt (not an Exception): the old file is untouched."""
    model, optimizer, scheduler = toy_run()
    path = save_checkpoint(tmp_path / "run.pt", model, {"epoch": 1}, optimizer, scheduler)
    real_save = torch.save

    def save_half_then_interrupt(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[:buffer.tell() // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.torch, "save", save_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, {"epoch": 2}, optimizer, scheduler)
    monkeypatch.undo()
    assert resume_checkpoint(path, *toy_run()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_first_line_drops_terminal_colour_codes():
    assert checkpoints.first_line(RuntimeError("\x1b[1mbold\x1b[0m text\nmore")) == "bold text"


@pytest.mark.parametrize("name", ["rng_states", "restore_rng_states", "strip_prefix", "BestCheckpoints"])
def test_chapter_teaches_the_package_code(name):
    """What chapter 5 teaches inline is what torchbook.checkpoints ships."""
    assert_taught_as_shipped("05_saving_and_loading", checkpoints, name)


# --- chapter 10: reusing weights under other names and with another head ------------------------

def test_rename_keys_rewrites_a_numbered_prefix_with_a_function():
    """`group1.` -> `stages.0.`: a match function computes the number; the values are shared."""
    weight = torch.ones(2)
    state = {"group1.0.conv1.weight": weight, "group3.1.bn1.bias": torch.zeros(2),
             "fc.bias": weight}
    renamed = checkpoints.rename_keys(state, r"^group(\d+)\.",
                                      lambda match: f"stages.{int(match[1]) - 1}.")
    assert list(renamed) == ["stages.0.0.conv1.weight", "stages.2.1.bn1.bias", "fc.bias"]
    assert renamed["stages.0.0.conv1.weight"] is weight
    assert list(state)[0] == "group1.0.conv1.weight"  # the original is left alone


def test_rename_keys_with_a_string_replacement_loads_strictly():
    """A renamed copy of a model's weights loads into the model with strict=True."""
    model = trained_looking(Net())
    saved = checkpoints.rename_keys(model.state_dict(), r"^linear(\d)\.", r"head\1.")
    assert "head1.weight" in saved and "linear1.weight" not in saved
    fresh = Net()
    fresh.load_state_dict(checkpoints.rename_keys(saved, r"^head(\d)\.", r"linear\1."))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 model.state_dict().values()))


def test_drop_mismatched_shapes_leaves_out_the_old_head_only():
    """A one-output head does not fit a two-output model: dropped; unknown names are kept."""
    state = dict(Net(num_outputs=1).state_dict(), extra=torch.zeros(3))
    kept, dropped = checkpoints.drop_mismatched_shapes(state, Net(num_outputs=2))
    assert dropped == ["linear2.weight", "linear2.bias"]
    assert "extra" in kept and "linear1.weight" in kept and len(kept) == len(state) - 2
    report = Net(num_outputs=2).load_state_dict(kept, strict=False)
    assert report.missing_keys == ["linear2.weight", "linear2.bias"]
    assert report.unexpected_keys == ["extra"]


@pytest.mark.parametrize("name", ["rename_keys", "drop_mismatched_shapes"])
def test_chapter_10_teaches_the_package_code(name):
    """What chapter 10 teaches inline is what torchbook.checkpoints ships."""
    assert_taught_as_shipped("10_reusing_trained_models", checkpoints, name)
