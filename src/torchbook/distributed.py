"""Training on several processes with `torch.distributed` and DDP (chapter 11).

In a worker process that `torchrun` started:

- `init_from_torchrun(device_name=None)`: read the variables torchrun sets (`RANK`, `WORLD_SIZE`,
  `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), pick the backend (`nccl` on CUDA, `gloo` on the
  CPU), join the process group and return this worker's device. Outside torchrun it raises
  `NotLaunchedByTorchrun`, whose message says how to launch the script.
- `is_distributed()`, `rank()`, `world_size()`, `is_main_process()`: who this process is (a
  plain single process is rank 0 of 1, so the same code runs with and without torchrun);
  `process_device()`: its device in the group; `restarted_by_torchrun()`: True after a restart.
- `distributed_sampler(dataset, shuffle, seed, drop_last)`: this rank's shard of a dataset; call
  its `set_epoch(epoch)` before every epoch.
- `wrap_ddp(model, device)`: `SyncBatchNorm` where the device supports it (CUDA), then
  `DistributedDataParallel`; `unwrap(model)` gives the plain model back (no `module.` prefix).
- `sum_over_ranks(tensor)`, `all_reduce_sum(values)`, `all_reduce_mean(value)`,
  `gather_objects(obj)`: metrics and records across ranks.
- `barrier()`, `cleanup()`: wait for every rank; leave the process group.

Launching from Python (the chapter's cells and the tests), so that every process ends:

- `free_port()`, `torchrun_command(...)`, `worker_environment(threads)`;
- `Launch(commands)`: start launchers in the background, each in its own session; on leaving the
  `with` block (normally, on a timeout or on an error) kill each launcher and every worker it
  started; `run_launchers(commands, timeout)` runs them to the end and returns their exit codes
  and outputs; `clean_lines(output)` drops torchrun's own log lines.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Optional, Sequence

import psutil
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from torchbook.device import get_device

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SYNC_BATCHNORM_DEVICES = ("cuda", "xpu", "hpu")  # where PyTorch's SyncBatchNorm runs
STORE_TIMEOUT = timedelta(minutes=5)  # how long a worker waits for the others to join


class NotLaunchedByTorchrun(RuntimeError):
    """A script asked to train on several processes was started without torchrun."""


def missing_torchrun_variables() -> list[str]:
    """The environment variables torchrun sets that this process lacks."""
    return [name for name in TORCHRUN_VARIABLES if name not in os.environ]


def backend_for(device: torch.device) -> str:
    """The collective backend for a device: NCCL between GPUs, Gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def worker_device(device_name: Optional[str], local_rank: int) -> torch.device:
    """This worker's device: GPU number LOCAL_RANK on a CUDA machine, else the CPU."""
    device = get_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"distributed training runs on cuda (nccl) or cpu (gloo), not on "
                         f"{device.type}: pass --device cpu (or set BOOK_DEVICE=cpu)")
    return device


def init_from_torchrun(device_name: Optional[str] = None) -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's device."""
    missing = missing_torchrun_variables()
    if missing:
        raise NotLaunchedByTorchrun(
            f"--distributed needs the variables torchrun sets ({', '.join(missing)} missing). "
            "Launch the script with torchrun, e.g. torchrun --standalone --nproc_per_node=2 "
            "-m torchbook.train --distributed ..., or leave out --distributed to train in "
            "this one process.")
    device = worker_device(device_name, int(os.environ["LOCAL_RANK"]))
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(backend=backend_for(device), store=attempt_store(rank, size),
                            rank=rank, world_size=size)
    return device


def attempt_store(rank: int, size: int) -> dist.Store:
    """torchrun's key-value store, seen through a prefix of its own for each restart attempt.

    torchrun keeps its store when it restarts the workers: without the prefix, the new workers
    would read the addresses the dead ones published there, and fail to connect.
    """
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size,
                          is_master=rank == 0 and not agent_hosts_it, timeout=STORE_TIMEOUT)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"attempt{attempt}/", store)


def restarted_by_torchrun() -> bool:
    """True in a worker that torchrun started again after a failure (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def is_distributed() -> bool:
    """True in a process that has joined a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: 0 to world_size() - 1 (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, the one process that saves files and prints."""
    return rank() == 0


def distributed_sampler(dataset: Dataset, shuffle: bool = True, seed: int = 0,
                        drop_last: bool = False) -> DistributedSampler:
    """This rank's shard of `dataset`, reshuffled each epoch after `set_epoch(epoch)`."""
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle,
                              seed=seed, drop_last=drop_last)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as a DistributedDataParallel replica; BatchNorm synchronised where it can be."""
    if device.type in SYNC_BATCHNORM_DEVICES:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (its state_dict has no `module.` prefix)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def process_device() -> torch.device:
    """This process's device in the group: its GPU under NCCL, the CPU under Gloo."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of the tensor summed over all ranks (the tensor itself in a single process)."""
    if not is_distributed():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Each value summed over all ranks (unchanged in a single process)."""
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=process_device())
    return sum_over_ranks(tensor).tolist()


def all_reduce_mean(value: float) -> float:
    """The mean over ranks of one number per rank (unchanged in a single process)."""
    return all_reduce_sum([value])[0] / world_size()


def gather_objects(obj: object) -> list:
    """One picklable object from every rank, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait until every rank reaches this line (nothing to wait for in a single process)."""
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if this process joined one; its backend goes last."""
    if is_distributed():
        # On older torch (2.4), dropping the group held the GIL while it waited for gloo's
        # threads, and hung when one of them needed the GIL to free a tensor. The backend's own
        # destructor releases the GIL while it waits.
        backend = dist.group.WORLD._get_backend(process_device())
        dist.destroy_process_group()
        del backend  # the last reference: gloo's threads are joined here, without the GIL


# Launching from Python: every launcher and every worker it starts ends, whatever happens.

def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun_command(args: Sequence[str], nproc_per_node: int = 2,
                     launcher: Sequence[str] = ("--standalone",)) -> list[str]:
    """torchrun (`python -m torch.distributed.run` of this Python): launcher options, then args."""
    return [sys.executable, "-m", "torch.distributed.run", *launcher,
            f"--nproc_per_node={nproc_per_node}", *map(str, args)]


def worker_environment(threads: int = 1, **extra: str) -> dict[str, str]:
    """This process's environment with OMP_NUM_THREADS (threads per worker) and `extra` set."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", **extra)
    return env


class Launch:
    """Run launcher commands in the background; leaving the block ends them and their workers."""

    def __init__(self, commands: Sequence[Sequence[str]], env: Optional[dict] = None,
                 cwd: Optional[str | Path] = None):
        self.commands, self.env, self.cwd = [list(c) for c in commands], env, cwd
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []
        self.seen: dict[int, psutil.Process] = {}  # every descendant met so far, by pid

    def __enter__(self) -> "Launch":
        for command in self.commands:
            log = tempfile.TemporaryFile(mode="w+")
            self.logs.append(log)
            self.processes.append(subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True))  # its own session: a Ctrl-C in the notebook spares it
        return self

    def workers(self) -> list[psutil.Process]:
        """The live processes the launchers started (remembered, in case a launcher dies)."""
        for process in self.processes:
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
        return [p for p in self.seen.values() if p.is_running()]

    def worker_with_rank(self, rank: int) -> Optional[psutil.Process]:
        """The live worker whose RANK (set by torchrun) is `rank`, or None."""
        for process in self.workers():
            try:
                if process.environ().get("RANK") == str(rank):
                    return process
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def wait(self, timeout: float) -> list[int]:
        """Wait for every launcher to exit; their exit codes. TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.processes):
            if time.monotonic() > deadline:
                tails = ["\n".join(text.strip().splitlines()[-15:]) for text in self.outputs()]
                raise TimeoutError(f"the launchers were still running after {timeout:.0f} s; "
                                   "the last lines each printed:\n" + "\n---\n".join(tails))
            self.workers()
            time.sleep(0.2)
        return [p.returncode for p in self.processes]

    def outputs(self) -> list[str]:
        """What each launcher and its workers printed (stdout and stderr together)."""
        texts = []
        for log in self.logs:
            log.flush()
            log.seek(0)
            texts.append(log.read())
        return texts

    def stop(self) -> None:
        """Kill every launcher and worker still running, and wait for them."""
        survivors = self.workers() + [psutil.Process(p.pid) for p in self.processes
                                      if p.poll() is None]
        for process in survivors:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(survivors, timeout=10)
        for process in self.processes:
            process.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_launchers(commands: Sequence[Sequence[str]], timeout: float = 300,
                  env: Optional[dict] = None,
                  cwd: Optional[str | Path] = None) -> tuple[list[int], list[str]]:
    """Run launcher commands side by side to the end; their exit codes and outputs."""
    with Launch(commands, env, cwd) as launch:
        codes = launch.wait(timeout)
        return codes, launch.outputs()


TORCHRUN_LOG = re.compile(r"^\s*(\[[^\]]*\]:?)?\s*[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\] ?")
C10D_LOG = re.compile(r"^\[[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ \S+\]")  # c10d's C++ lines (torch 2.4)
RANK_TRACEBACK = re.compile(r"^\[rank(\d+)\]: ?")  # how torch prefixes a worker's traceback
EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception)\b")


def short_error(text: str) -> str:
    """An exception line without source paths in brackets, cut after its first sentence."""
    text = re.sub(r"\[/[^\]]*\] ?", "", text)
    return text.split(". ")[0]


def clean_lines(output: str, keep_log: Sequence[str] = ()) -> list[str]:
    """The lines workers printed; torchrun's log lines only if they contain a `keep_log` phrase.

    A worker's traceback becomes one line: which rank failed, with which exception.
    """
    lines = []
    for line in output.splitlines():
        prefix, rank_line = TORCHRUN_LOG.match(line), RANK_TRACEBACK.match(line)
        if rank_line is not None:
            text = line[rank_line.end():]
            if EXCEPTION_LINE.match(text):
                lines.append(f"rank {rank_line.group(1)} failed: {short_error(text)}")
        elif C10D_LOG.match(line):
            continue
        elif prefix is None:
            if line.strip() and not set(line.strip()) <= {"*"}:
                lines.append(line)
        elif any(phrase in line for phrase in keep_log):
            lines.append("torchrun: " + line[prefix.end():].strip())
    return lines
