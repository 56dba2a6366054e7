"""torchbook.distributed: the helpers in one process, and real gloo runs under torchrun.

The multi-process tests launch torchbook.ddp_check with torchrun (tiny sizes, OMP_NUM_THREADS=1,
a timeout each) through `Launch`, which kills every launcher and worker it started when it ends.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from torch import nn

from torch.nn.parallel import DistributedDataParallel

from torchbook import ddp_check
from torchbook import distributed as ddp

WORKER = ("-m", "torchbook.ddp_check")
TIMEOUT = 120


def run_worker(nproc: int, *args: object) -> tuple[int, str]:
    """Run torchbook.ddp_check under torchrun with `nproc` processes; exit code and output."""
    codes, outputs = ddp.run_launchers([ddp.torchrun_command([*WORKER, *args], nproc)], TIMEOUT,
                                       env=ddp.worker_environment())
    return codes[0], outputs[0]


def test_a_single_process_is_rank_0_of_1() -> None:
    assert not ddp.is_distributed()
    assert (ddp.rank(), ddp.world_size(), ddp.is_main_process()) == (0, 1, True)
    assert ddp.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
    assert ddp.all_reduce_mean(3.0) == 3.0
    assert ddp.gather_objects({"a": 1}) == [{"a": 1}]
    ddp.barrier()
    ddp.cleanup()  # nothing to leave: no error


def test_outside_torchrun_the_error_names_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ddp.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ddp.NotLaunchedByTorchrun, match="torchrun --standalone") as error:
        ddp.init_from_torchrun("cpu")
    assert "RANK" in str(error.value) and not ddp.is_distributed()


def test_backend_follows_the_device() -> None:
    assert ddp.backend_for(torch.device("cuda", 1)) == "nccl"
    assert ddp.backend_for(torch.device("cpu")) == "gloo"


def test_free_port_can_be_bound() -> None:
    port = ddp.free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_unwrap_leaves_a_plain_model_alone() -> None:
    model = nn.Linear(2, 1)
    assert ddp.unwrap(model) is model


def test_clean_lines_drop_torchrun_logs_but_keep_asked_ones() -> None:
    output = ("W1201 22:39:52.424000 17088 torch/distributed/run.py:982] *****\n"
              "rank 0 says hello\n"
              "*****************************************\n"
              "[default0]:E1201 22:39:55.813000 17088 torch/distributed/elastic/api.py:1002] "
              "failed (exitcode: -9) local_rank: 1\n")
    assert ddp.clean_lines(output) == ["rank 0 says hello"]
    traceback = ("[rank0]: Traceback (most recent call last):\n"
                 "[rank0]:   File \"train.py\", line 266, in train_one_epoch\n"
                 "[rank0]: RuntimeError: [/src/gloo/pair.cc:545] Read error [127.0.0.1]:1192: "
                 "Connection reset by peer. This is typically caused by a remote worker\n")
    assert ddp.clean_lines(traceback) == [
        "rank 0 failed: RuntimeError: Read error [127.0.0.1]:1192: Connection reset by peer"]
    assert ddp.clean_lines(output, keep_log=["exitcode"]) == [
        "rank 0 says hello", "torchrun: failed (exitcode: -9) local_rank: 1"]


def test_launch_ends_every_process_it_started_even_on_a_timeout() -> None:
    sleeper = ("import subprocess, sys, time; "
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], "
               "start_new_session=True); time.sleep(300)")  # a worker in a session of its own
    with pytest.raises(TimeoutError, match="still running"):
        with ddp.Launch([[sys.executable, "-c", sleeper]]) as launch:
            deadline = time.monotonic() + 30
            while not launch.workers() and time.monotonic() < deadline:
                time.sleep(0.1)
            started = launch.workers() + [psutil.Process(launch.processes[0].pid)]
            assert len(started) == 2
            launch.wait(timeout=1)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started)


def test_torchrun_sets_rank_world_size_and_all_reduce_sums(tmp_path: Path) -> None:
    code, output = run_worker(2, "whoami", tmp_path / "who.json")
    assert code == 0, output
    result = json.loads((tmp_path / "who.json").read_text())
    assert result["ranks"] == [{"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
                               {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}]
    assert result["sum"] == 3.0  # (0 + 1) + (1 + 1)


def test_every_image_is_seen_exactly_once_per_epoch(tmp_path: Path) -> None:
    images = 36
    code, output = run_worker(2, "shards", tmp_path / "shards.json", images, 2)
    assert code == 0, output
    epochs = json.loads((tmp_path / "shards.json").read_text())
    assert len(epochs) == 2
    for per_rank in epochs:
        assert [len(shard) for shard in per_rank] == [18, 18]
        assert sorted(per_rank[0] + per_rank[1]) == list(range(images))
    assert epochs[0][0] != epochs[1][0]  # set_epoch reshuffles


def test_an_uneven_dataset_is_padded_with_one_repeated_image() -> None:
    dataset = torch.utils.data.TensorDataset(torch.arange(37))
    shards = [list(torch.utils.data.DistributedSampler(dataset, num_replicas=2, rank=rank, seed=0))
              for rank in (0, 1)]
    assert [len(shard) for shard in shards] == [19, 19]
    assert set(shards[0] + shards[1]) == set(range(37))
    assert len(set(shards[0]) & set(shards[1])) == 1


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two state_dicts' tensors."""
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def steps_weights(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Weights after 6 steps of batch 16 with 1 and with 2 processes (without and with BN)."""
    folder, weights = tmp_path_factory.mktemp("steps"), []
    for nproc in (1, 2):
        code, output = run_worker(nproc, "steps", folder / f"{nproc}.pt", 16, 6)
        assert code == 0, output
        weights.append(torch.load(folder / f"{nproc}.pt", weights_only=True))
    return weights


def test_two_processes_with_half_batches_match_one_process(steps_weights: list[dict]) -> None:
    one, two = steps_weights
    assert largest_difference(one["plain"], two["plain"]) < 1e-5


def test_without_sync_batchnorm_the_cpu_runs_differ(steps_weights: list[dict]) -> None:
    """On the CPU each rank normalises its own half batch: the weights drift apart."""
    one, two = steps_weights
    assert largest_difference(one["bn"], two["bn"]) > 1e-4


def test_ddp_with_one_process_trains_as_plain_pytorch(steps_weights: list[dict]) -> None:
    """Without a process group train_steps is plain training: the same weights as 1 DDP rank."""
    plain = ddp_check.train_steps(16, 6, batchnorm=True)
    assert not isinstance(plain, DistributedDataParallel) and not ddp.is_distributed()
    assert largest_difference(plain.state_dict(), steps_weights[0]["bn"]) < 1e-6


def test_a_worker_without_torchrun_exits_with_the_message(tmp_path: Path) -> None:
    env = {k: v for k, v in ddp.worker_environment().items() if k not in ddp.TORCHRUN_VARIABLES}
    codes, outputs = ddp.run_launchers([[sys.executable, *WORKER, "whoami", tmp_path / "w.json"]],
                                       TIMEOUT, env=env)
    assert codes[0] != 0 and "Launch the script with torchrun" in outputs[0]
    assert not (tmp_path / "w.json").exists()


def test_clean_lines_drops_c10d_socket_warnings() -> None:
    """torch 2.4's C++ c10d lines (a second launcher failing to bind the store port) are dropped."""
    from torchbook.distributed import clean_lines
    output = ("[W1202 01:22:50.189250540 socket.cpp:461] [c10d] The server socket has failed to bind\n"
              "epoch   1/1  train_loss 0.6\n")
    assert clean_lines(output) == ["epoch   1/1  train_loss 0.6"]


def test_a_launch_that_outlives_its_timeout_says_what_it_printed() -> None:
    """The TimeoutError carries the last lines of the hung command, and the block kills it."""
    command = [sys.executable, "-c", "import time; print('waiting for rank 1', flush=True); "
                                     "time.sleep(60)"]
    with ddp.Launch([command]) as launch:
        deadline = time.monotonic() + 30
        while "waiting" not in launch.outputs()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(TimeoutError, match="still running after 0 s(.|\n)*waiting for rank 1"):
            launch.wait(timeout=0.1)
        process = launch.processes[0]
    assert process.poll() is not None  # leaving the block ended it


LEAVER = """
import sys, time
import torch, torch.distributed as dist
from torchbook import distributed as ddp

ddp.init_from_torchrun("cpu")
me = ddp.rank()
if me == 0:  # gloo's thread will need the GIL (to run this Python callback) once rank 1 joins in,
    # as it needs the GIL to free a tensor whose Python object is gone
    dist.all_reduce(torch.ones(1), async_op=True).get_future().then(lambda done: done.value())
else:
    time.sleep(2)  # by now rank 0 is leaving: its thread still waits in the all-reduce
    dist.all_reduce(torch.ones(1))
print(f"rank {me} leaving", flush=True)
start = time.perf_counter()
(ddp.cleanup if sys.argv[1] == "cleanup" else dist.destroy_process_group)()
print(f"rank {me} left after {time.perf_counter() - start:.1f} s", flush=True)
"""


def leave_while_gloo_needs_the_gil(tmp_path: Path, how: str,
                                   timeout: float = 60) -> tuple[list[int], str]:
    """Run LEAVER on 2 processes (rank 0 leaves with work in flight); exit codes and output."""
    script = tmp_path / "leaver.py"
    script.write_text(LEAVER)
    codes, outputs = ddp.run_launchers([ddp.torchrun_command([script, how], 2)], timeout,
                                       env=ddp.worker_environment())
    return codes, outputs[0]


def test_cleanup_leaves_while_a_gloo_thread_needs_the_gil(tmp_path: Path) -> None:
    """cleanup() lets gloo's threads take the GIL while it waits for them (torch 2.4 hung here)."""
    codes, output = leave_while_gloo_needs_the_gil(tmp_path, "cleanup")
    assert codes == [0], output
    waited = re.search(r"rank 0 left after ([0-9.]+) s", output)
    assert waited and "rank 1 left" in output, output
    assert float(waited.group(1)) >= 0.5, output  # it did wait for the all-reduce in flight


@pytest.mark.skipif(torch.__version__ >= "2.5", reason="measured on torch 2.4 (make test-oldest); "
                    "torch 2.14 no longer hangs (pytorch PR 154976 released the GIL there)")
def test_destroy_process_group_alone_hangs_there_on_torch_2_4(tmp_path: Path) -> None:
    """The case cleanup() avoids is real: destroy_process_group() alone is stuck after 30 s."""
    with pytest.raises(TimeoutError, match="still running after 30 s") as hung:
        leave_while_gloo_needs_the_gil(tmp_path, "destroy", timeout=30)
    output = str(hung.value)  # the last lines the launcher printed
    assert "rank 0 leaving" in output and "rank 0 left" not in output, output
