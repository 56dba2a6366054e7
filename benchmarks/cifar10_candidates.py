"""Choose chapter 8's ten-class recipe on the validation split: train one candidate setting.

Each run trains `torchbook.zoo.fit_cifar10_model` with `Cifar10Config` changed by the options
given (depth, width, batch size, learning rate, epochs) on the 45,000 fitting images, and records
its validation accuracy after every epoch and its training time. It never predicts the test
images: the test set is used once, by `cifar10_race.py`, for the setting chosen here. Results
are added to (or replace, for the same setting) the entries of
`benchmarks/results/cifar10_candidates.json`, with the CPU model and load average of each run:
time only a machine that runs nothing else.

    python benchmarks/cifar10_candidates.py --depth 14 --epochs 15     # one candidate
    python benchmarks/cifar10_candidates.py --data data/sample/cifar10 --epochs 1 --json /tmp/c.json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (cifar2_race.py)

import pandas as pd
import torch

from common import (REPO, check_race_data, cpu_model, display_path, load_average_span,
                    write_json_atomically)
from torchbook.device import describe_device, get_device
from torchbook.zoo import Cifar10Config, cifar10_data, fit_cifar10_model

RESULTS = REPO / "benchmarks" / "results" / "cifar10_candidates.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The data, the results file, and the settings that differ from Cifar10Config()."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "cifar10")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    for name in ("depth", "width", "epochs", "batch_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    parser.add_argument("--lr", type=float)
    return parser.parse_args(argv)


def candidate_config(args: argparse.Namespace) -> Cifar10Config:
    """Cifar10Config() with the settings given on the command line."""
    names = ("depth", "width", "epochs", "batch_size", "lr")
    changes = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return dataclasses.replace(Cifar10Config(), **changes)


def candidate_name(config: Cifar10Config) -> str:
    """A short key for a setting, e.g. resnet20-w16-b256-lr0.2-e10."""
    return (f"resnet{config.depth}-w{config.width}-b{config.batch_size}-lr{config.lr:g}"
            f"-e{config.epochs}")


def train_candidate(data_root: Path, config: Cifar10Config, device: torch.device) -> dict:
    """Train one setting; its validation history, best epoch and wall-clock training time."""
    data = cifar10_data(data_root)
    load_before = os.getloadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="candidate-") as run:
        _, meta = fit_cifar10_model(data, config, device, Path(run))
    history = pd.DataFrame(meta["history"])
    return {"config": config.to_dict(), "best_epoch": meta["best_epoch"],
            "best_valid_accuracy": round(float(history["valid_acc"].max()), 4),
            "bfloat16": meta["bfloat16"],
            "train_seconds": round(time.perf_counter() - start, 1),
            "history": history.round(4).to_dict(orient="list"),
            "fit_images": len(data.fit.labels), "valid_images": len(data.valid.labels),
            "device": describe_device(device), "cpu_model": cpu_model(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "data": display_path(data_root),
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "load_average": load_average_span(load_before)}


def record(path: Path, name: str, result: dict) -> dict:
    """Add `result` under `name` to the JSON at `path` (kept atomic); return all candidates."""
    candidates = json.loads(path.read_text())["candidates"] if path.is_file() else {}
    candidates[name] = result
    write_json_atomically(path, {"candidates": dict(sorted(candidates.items()))})
    return candidates


def main(argv: list[str] | None = None) -> dict:
    """Train the candidate given, record it, and print every candidate recorded so far."""
    args = parse_args(argv)
    check_race_data(args.data, "CIFAR-10", "cifar10")
    config = candidate_config(args)
    result = train_candidate(args.data, config, get_device(args.device))
    candidates = record(args.json, candidate_name(config), result)
    for name, entry in sorted(candidates.items(), key=lambda item: -item[1]["best_valid_accuracy"]):
        print(f"{name:32s} valid {entry['best_valid_accuracy']:.4f} (epoch {entry['best_epoch']}) "
              f"{entry['train_seconds']:7.1f} s  load {entry['load_average']['start'][0]}")
    return result


if __name__ == "__main__":
    main()
