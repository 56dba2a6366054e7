"""torchbook.train --distributed: under torchrun (gloo, 2 processes), restarts, two 'nodes'.

Tiny runs on the committed sample (ResNet-8 of width 8); every launch goes through
torchbook.distributed.Launch, which ends every launcher and worker when it is left.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from torchbook import distributed as ddp
from torchbook import train
from torchbook.checkpoints import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "cifar2"
TINY = ["--model", "resnet8", "--width", "8", "--no-progress"]
TIMEOUT = 180


def train_args(out: Path, epochs: int, batch_size: int = 32) -> list[str]:
    """`-m torchbook.train --distributed` on the sample with a tiny ResNet."""
    return ["-m", "torchbook.train", "--distributed", "--data", str(SAMPLE), "--out", str(out),
            "--epochs", str(epochs), "--batch-size", str(batch_size), *TINY]


def largest_difference(run_a: Path, run_b: Path) -> float:
    """The largest difference between the weights in two runs' last.pt."""
    a, b = (read_checkpoint(run / "last.pt")["state_dict"] for run in (run_a, run_b))
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_outside_torchrun_it_fails_cleanly_naming_torchrun(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, *train_args(tmp_path / "run", 1)], cwd=REPO,
                            capture_output=True, text=True, timeout=TIMEOUT,
                            env=ddp.worker_environment())
    assert result.returncode == 2
    assert "torchrun" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --distributed needs the variables torchrun sets")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2-epoch run with 2 processes; its folder and output."""
    out = tmp_path_factory.mktemp("runs") / "two"
    codes, outputs = ddp.run_launchers([ddp.torchrun_command(train_args(out, 2), 2)], TIMEOUT,
                                       env=ddp.worker_environment())
    assert codes == [0], outputs[0]
    return out, outputs[0]


def test_two_processes_write_one_run(two_processes: tuple[Path, str]) -> None:
    out, output = two_processes
    assert {p.name for p in out.iterdir()} == {"last.pt", "best.pt", "history.csv"}
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    lines = ddp.clean_lines(output)
    assert sum(line.startswith("epoch   1/2") for line in lines) == 1  # rank 0 alone prints
    assert "180 images" in lines[0] and "of 5 steps" in lines[0]  # 90 each, batch 16 each
    meta = read_checkpoint(out / "last.pt")["meta"]
    assert meta["epoch"] == 2 and not any(k.startswith("module.")
                                          for k in read_checkpoint(out / "last.pt")["state_dict"])


def test_train_counts_every_process_images(two_processes: tuple[Path, str]) -> None:
    """train_acc and the speed count all 160 images of an epoch, not one process's 80."""
    history = pd.read_csv(two_processes[0] / "history.csv")
    assert all(abs(acc * 160 - round(acc * 160)) < 1e-3 for acc in history["train_acc"])
    images = history["images_per_s"] * history["seconds"]
    assert all(abs(n - 160) < 1e-6 for n in images), images


def test_a_rank_other_than_0_writes_and_prints_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    """A group of one process in this one, which believes it is not rank 0."""
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(ddp.free_port())}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(train, "is_main_process", lambda: False)
    out = tmp_path / "run"
    assert train.main(train_args(out, 1)[2:] + ["--device", "cpu"]) == 0
    assert not ddp.is_distributed()  # the group was left
    assert list(out.iterdir()) == [] and capsys.readouterr().out == ""


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    """--batch-size is the batch of a step over all processes: 33 cannot be split over 2."""
    monkeypatch.setattr(train, "world_size", lambda: 2)
    args = train_args(tmp_path / "run", 1, batch_size=33)[3:]  # without -m ... --distributed
    assert train.main(args) == 2
    error = capsys.readouterr().err
    assert "--batch-size 33 is the batch of one step over all 2 processes" in error


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_never_killed(
        tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    env = ddp.worker_environment()
    command = ddp.torchrun_command(train_args(killed, 2, batch_size=8), 2,
                                  launcher=("--standalone", "--max-restarts=1"))
    with ddp.Launch([command], env) as launch:
        deadline = time.monotonic() + TIMEOUT
        while not (killed / "last.pt").exists():  # epoch 1 is saved: epoch 2 is under way
            assert time.monotonic() < deadline and launch.processes[0].poll() is None
            launch.workers()
            time.sleep(0.02)
        victim = launch.worker_with_rank(1)
        assert victim is not None
        victim.kill()
        codes, output = launch.wait(TIMEOUT), launch.outputs()[0]
    assert codes == [0], output
    assert "resuming" in output and "after epoch 1" in output, output
    codes, outputs = ddp.run_launchers([ddp.torchrun_command(train_args(straight, 2, 8), 2)],
                                       TIMEOUT, env=env)
    assert codes == [0], outputs[0]
    assert largest_difference(straight, killed) == 0.0
    assert pd.read_csv(killed / "history.csv")["epoch"].tolist() == [1, 2]


def test_two_launchers_make_one_job_like_two_machines(tmp_path: Path) -> None:
    port, out = ddp.free_port(), tmp_path / "run"
    launchers = [ddp.torchrun_command(train_args(out, 1), 1, launcher=(
        "--nnodes=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=test")) for _ in range(2)]  # c10d numbers the nodes as they join
    codes, outputs = ddp.run_launchers(launchers, TIMEOUT, env=ddp.worker_environment())
    assert codes == [0, 0], outputs
    logs = [ddp.clean_lines(output) for output in outputs]
    assert sorted(len(lines) for lines in logs) == [0, 3], logs  # rank 0's launcher alone
    assert "of 5 steps" in max(logs, key=len)[0]  # two processes share each batch of 32
    assert (out / "last.pt").exists() and (out / "history.csv").exists()
