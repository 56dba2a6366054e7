"""Tests for torchbook.checkpoints: safe, generic saving and loading."""
from __future__ import annotations

import pytest
import torch

import torchbook.checkpoints as checkpoints
from torchbook.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from torchbook.models import Net
from torchbook.recipe import RecipeConfig, build_model

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
    with pytest.raises(CheckpointError, match="No checkpoint at .*Train the model"):
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
