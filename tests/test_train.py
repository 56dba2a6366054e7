"""Tests for torchbook.train, the command-line training script (tiny ResNets on the sample)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import torchbook.device
import torchbook.evaluate
from torchbook import engine, train
from torchbook.checkpoints import read_checkpoint, save_checkpoint
from torchbook.recipe import RecipeConfig, build_model

from scripts import expect_input_error

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "cifar2"
TINY = ["--model", "resnet8", "--width", "8", "--batch-size", "32", "--no-progress"]


def run_train(out: Path, *extra: str, data: Path = SAMPLE) -> int:
    """Call the script's main in this process on the sample with a tiny ResNet."""
    return train.main(["--data", str(data), "--out", str(out), *TINY, *extra])


def script(module: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start `python -m torchbook.<module> args...` with stdout and stderr captured as text."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", f"torchbook.{module}", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """A run of one epoch on the sample (read-only for the tests: copy it to change it)."""
    out = tmp_path_factory.mktemp("runs") / "one"
    assert run_train(out, "--epochs", "1") == 0
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a run folder that a test may continue or damage."""
    return Path(shutil.copytree(run, tmp_path / run.name))


def test_one_epoch_writes_checkpoints_and_history(one_epoch: Path) -> None:
    """last.pt, best.pt and a one-row history.csv; the checkpoint meta is what evaluate needs."""
    history = pd.read_csv(one_epoch / "history.csv")
    assert history["epoch"].tolist() == [1]
    assert {"train_loss", "train_acc", "valid_loss", "valid_acc", "valid_auc", "lr",
            "seconds"} <= set(history.columns)
    last = read_checkpoint(one_epoch / "last.pt")
    assert {"optimizer", "scheduler", "rng"} <= set(last)
    meta = last["meta"]
    assert meta["model"] == "resnet8" and meta["depth"] == 8 and meta["width"] == 8
    assert meta["epoch"] == 1 and meta["args"]["epochs"] == 1 and meta["args"]["resume"] is False
    assert meta["classes"] == ["0_airplane", "1_automobile"]
    assert len(meta["mean"]) == len(meta["std"]) == 3 and all(0 < s < 1 for s in meta["std"])
    assert read_checkpoint(one_epoch / "best.pt")["meta"]["best_epoch"] == 1


def test_the_first_line_says_one_epoch_in_the_singular(tmp_path, capsys) -> None:
    """'1 epoch of N steps', not '1 epochs'."""
    assert run_train(tmp_path / "run", "--epochs", "1") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "; 1 epoch of " in first, first


def test_validation_split_holds_out_a_tenth_of_train_and_never_reads_test(tmp_path) -> None:
    """180 of the sample's 200 training images are fitted, 20 validated; test/ is not needed."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE / "train", data / "train")
    loaded = train.load_data(data, engine.SETTINGS)
    assert len(loaded.fit_labels) == 180 and len(loaded.valid_labels) == 20
    assert run_train(tmp_path / "run", "--epochs", "1", data=data) == 0


def test_resume_continues_from_the_saved_epoch(one_epoch: Path, tmp_path) -> None:
    """--resume trains epoch 2 only: the history has epochs 1 and 2, the first row unchanged."""
    run = copy_run(one_epoch, tmp_path)
    assert run_train(run, "--epochs", "2", "--resume") == 0
    before, after = pd.read_csv(one_epoch / "history.csv"), pd.read_csv(run / "history.csv")
    assert after["epoch"].tolist() == [1, 2]
    pd.testing.assert_frame_equal(after.iloc[:1], before)
    assert read_checkpoint(run / "last.pt")["meta"]["epoch"] == 2


def interrupt_after_first_epoch(row: dict, epochs: int, best: bool, seconds_left: float) -> str:
    """Stand-in for epoch_line: Ctrl-C once epoch 1 is saved."""
    raise KeyboardInterrupt


def test_resumed_run_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch) -> None:
    """A 2-epoch run stopped after epoch 1 and resumed ends with the same weights as one not
    stopped (same batches, augmentations and learning rates: the RNG states are restored)."""
    with monkeypatch.context() as patch:
        patch.setattr(engine, "epoch_line", interrupt_after_first_epoch)
        assert run_train(tmp_path / "resumed", "--epochs", "2") == 130
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["meta"]["epoch"] == 1
    assert run_train(tmp_path / "resumed", "--epochs", "2", "--resume") == 0
    assert run_train(tmp_path / "straight", "--epochs", "2") == 0
    a = read_checkpoint(tmp_path / "resumed" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    timing = ["seconds", "images_per_s"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "resumed" / "history.csv").drop(
        columns=timing), pd.read_csv(tmp_path / "straight" / "history.csv").drop(columns=timing))


def test_resuming_a_finished_run_says_so(one_epoch: Path, capsys) -> None:
    """Nothing to train: a message and exit code 0, nothing rewritten."""
    stamp = (one_epoch / "last.pt").stat().st_mtime_ns
    assert run_train(one_epoch, "--epochs", "1", "--resume") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (one_epoch / "last.pt").stat().st_mtime_ns == stamp


def test_a_longer_resumed_run_follows_the_longer_schedule(one_epoch: Path, tmp_path) -> None:
    """Resuming to more epochs stretches the cosine: epoch 2 starts at the new schedule's lr."""
    run = copy_run(one_epoch, tmp_path)
    assert run_train(run, "--epochs", "3", "--resume") == 0
    lr = pd.read_csv(run / "history.csv")["lr"].tolist()
    assert lr[1] > 0.05  # 5 of 15 steps done: high in the cosine, not the 2-epoch run's end


def test_missing_data_folder(tmp_path, capsys) -> None:
    expect_input_error(run_train(tmp_path / "run", data=tmp_path / "nowhere"), capsys,
                       "no folder", "train")


def test_empty_data_folder(tmp_path, capsys) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    expect_input_error(run_train(tmp_path / "run", data=tmp_path / "data"), capsys,
                       "no class folders")


def test_unreadable_image(tmp_path, capsys) -> None:
    """A file that is called .png but is not an image."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE / "train", data / "train")
    (data / "train" / "0_airplane" / "broken.png").write_bytes(b"not a png")
    expect_input_error(run_train(tmp_path / "run", data=data), capsys, "cannot be read")


def test_unknown_model(tmp_path, capsys) -> None:
    expect_input_error(run_train(tmp_path / "run", "--model", "resnet18"), capsys, "6n + 2")


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--width", "0"),
                                           ("--lr", "-0.1"), ("--valid-fraction", "1.5"),
                                           ("--epochs", "0")])
def test_out_of_range_settings(tmp_path, capsys, option: str, value: str) -> None:
    expect_input_error(run_train(tmp_path / "run", option, value), capsys, option)


def test_a_run_is_not_overwritten_without_resume(one_epoch: Path, capsys) -> None:
    expect_input_error(run_train(one_epoch, "--epochs", "2"), capsys, "--resume")


def test_resume_without_a_run(tmp_path, capsys) -> None:
    expect_input_error(run_train(tmp_path / "run", "--resume"), capsys, "nothing to resume")


def test_resume_from_a_corrupt_checkpoint(one_epoch: Path, tmp_path, capsys) -> None:
    run = copy_run(one_epoch, tmp_path)
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:1000])
    expect_input_error(run_train(run, "--epochs", "2", "--resume"), capsys, "corrupt")


def test_resume_from_a_checkpoint_of_another_model(tmp_path, capsys) -> None:
    """The book's recipe network (as data/models/cifar2_recipe.pt holds it) is not a run."""
    save_checkpoint(tmp_path / "run" / "last.pt", build_model(RecipeConfig(widths=(4, 8))))
    expect_input_error(run_train(tmp_path / "run", "--resume"), capsys, "RecipeNet")


def test_resume_with_other_settings(one_epoch: Path, tmp_path, capsys) -> None:
    run = copy_run(one_epoch, tmp_path)
    code = train.main(["--data", str(SAMPLE), "--out", str(run), "--resume", "--epochs", "2",
                       "--model", "resnet20"])
    expect_input_error(code, capsys, "resnet8", "resnet20")


def test_resume_with_another_class_count(one_epoch: Path, tmp_path, capsys) -> None:
    """A folder with three classes cannot continue a two-class run."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE / "train", data / "train")
    shutil.copytree(SAMPLE / "train" / "0_airplane", data / "train" / "2_copy")
    run = copy_run(one_epoch, tmp_path)
    expect_input_error(run_train(run, "--epochs", "2", "--resume", data=data), capsys,
                       "2_copy")


def test_unavailable_device(tmp_path, capsys, monkeypatch) -> None:
    """--device cuda on a machine without it."""
    monkeypatch.setattr(torchbook.device, "available_devices", lambda: ["cpu"])
    monkeypatch.setattr(torchbook.evaluate, "available_devices", lambda: ["cpu"])
    expect_input_error(run_train(tmp_path / "run", "--device", "cuda"), capsys,
                       "--device cuda", "not available")


def test_script_gives_exit_code_2_without_traceback(tmp_path) -> None:
    """Run as `python -m torchbook.train`: one error line, exit code 2."""
    process = script("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert err.startswith("error: ") and "Traceback" not in err


def test_ctrl_c_leaves_the_last_complete_checkpoint(tmp_path) -> None:
    """SIGINT after the first checkpoint: exit 130, a message, a loadable last.pt, resumable."""
    out = tmp_path / "run"
    # A shell script's background job (`make test &`) inherits SIGINT ignored; Ctrl-C reaches a
    # terminal's foreground process with the default action, so give the command that back.
    process = script("train", "--data", str(SAMPLE), "--out", str(out), *TINY,
                     "--epochs", "1000",
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "last complete checkpoint" in err and "--resume" in err
    epoch = read_checkpoint(out / "last.pt")["meta"]["epoch"]
    assert 1 <= epoch < 1000 and f"(epoch {epoch})" in err
