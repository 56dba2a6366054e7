"""Race chapter 8's ten-class recipe against the SimpleCNN baseline, on the same CIFAR-10.

1. `seed`: the source tutorial's ten-class `SimpleCNN` (conv 3->18, pool, fc 4608->64->10),
   trained the simple way: `ImageFolder` + `ToTensor` + `Normalize(0.5, 0.5)`, `CrossEntropyLoss`,
   Adam lr 0.001, batches of 32, shuffled, 5 epochs, on all 50,000 training images.
2. `book`: chapter 8's recipe, `torchbook.zoo.fit_cifar10_model` with `Cifar10Config()`, trained
   by the book's engine (`torchbook.engine`, as `make models` trains it: the
   chapter 7 ResNet, warm-up + cosine SGD, label smoothing, bfloat16 where a few timed steps
   found it faster, flip TTA), trained on 45,000 images with the epoch of best validation accuracy on
   the other 5,000.

Both run one after the other in this process; `train_seconds` is the wall time of training with
the data decoding included, `train_cpu_seconds` the CPU time it used (all threads): on a machine
shared with other work, wall time grows with the load while CPU time changes much less. Usage
(from the repository root; `make bench` runs the second line):

    python benchmarks/cifar10_race.py --json benchmarks/results/cifar10_race.json
    python benchmarks/cifar10_race.py --save-model data/models/cifar10_resnet.pt  # chapter 8's
    python benchmarks/cifar10_race.py --data data/sample/cifar10 --seed-epochs 1 --book-epochs 1 \\
        --json /tmp/race10.json                            # a quick check on the sample
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import resource
import shlex
import tempfile
import sys
import time
from pathlib import Path

# Threads that wait sleep instead of spinning (see cifar2_race.py); set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from torchbook.device import describe_device, get_device
from torchbook.models import SimpleCNN, count_parameters
from torchbook.settings import seed_everything
from torchbook.checkpoints import save_checkpoint
from torchbook.zoo import (Cifar10Config, cifar10_checkpoint_meta, cifar10_data,
                           cifar10_metrics, fit_cifar10_model, predict_cifar10_proba)

from common import (REPO, check_race_data, cpu_model, display_path, load_average_span, peak_rss_mb,
                    ratio, train_plain, write_json_atomically)

SEED_PARAMETERS = 296_130


def cpu_seconds() -> float:
    """CPU time this process has used so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed_loader(folder: Path, shuffle: bool) -> DataLoader:
    """The baseline's pipeline: ImageFolder, ToTensor, Normalize to [-1, 1], batches of 32."""
    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    return DataLoader(datasets.ImageFolder(str(folder), transform=transform), batch_size=32,
                      shuffle=shuffle)


def train_seed(train_dir: Path, epochs: int, device: torch.device) -> tuple[nn.Module, float, int]:
    """Train the SimpleCNN baseline; return it, the training seconds and the images seen."""
    start = time.perf_counter()
    loader = seed_loader(train_dir, shuffle=True)
    model = SimpleCNN().to(device)
    if count_parameters(model) != SEED_PARAMETERS:
        raise RuntimeError(f"SimpleCNN has {count_parameters(model)} parameters, "
                           f"not {SEED_PARAMETERS}")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    seen = train_plain(model, loader, nn.CrossEntropyLoss(), optimizer, epochs, device)
    return model, time.perf_counter() - start, seen


@torch.no_grad()
def seed_test_accuracy(model: nn.Module, test_dir: Path, device: torch.device) -> float:
    """Share of test images whose largest logit is their class."""
    model.eval()
    hits = total = 0
    for images, labels in seed_loader(test_dir, shuffle=False):
        hits += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
        total += len(labels)
    return hits / total


def race_seed(data: Path, epochs: int, device: torch.device) -> dict:
    """Run the `seed` recipe and return its JSON entry."""
    seed_everything(0)
    cpu = cpu_seconds()
    model, seconds, seen = train_seed(data / "train", epochs, device)
    cpu = cpu_seconds() - cpu
    return {"description": "SimpleCNN baseline: ImageFolder+ToTensor+Normalize(0.5), "
                           "CrossEntropyLoss, Adam lr 0.001, batch 32",
            "test_accuracy": round(seed_test_accuracy(model, data / "test", device), 4),
            "train_seconds": round(seconds, 2), "train_cpu_seconds": round(cpu, 1),
            "train_images_per_second": round(seen / seconds, 1),
            "peak_rss_mb": peak_rss_mb(), "epochs": epochs, "parameters": count_parameters(model),
            "train_images": seen // epochs if epochs else 0}


def race_book(data: Path, config: Cifar10Config, device: torch.device,
              save_model: Path | None = None, progress: bool = False) -> dict:
    """Run chapter 8's recipe (decoding included in the time) and return its JSON entry.

    With `save_model`, also save the model as `load_or_train_cifar10_model` would have trained it.
    """
    start, cpu = time.perf_counter(), cpu_seconds()
    split = cifar10_data(data)
    with tempfile.TemporaryDirectory(prefix="race-") as run:
        model, meta = fit_cifar10_model(split, config, device, Path(run), progress)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    bf16, history, best_epoch = meta["bfloat16"]["enabled"], meta["history"], meta["best_epoch"]
    proba = predict_cifar10_proba(model, split.test.images, device, tta=True, bf16=bf16)
    test = cifar10_metrics(proba, split.test.labels)
    seen = len(split.fit.labels) // config.batch_size * config.batch_size * config.epochs
    if save_model is not None:
        save_checkpoint(save_model, model, cifar10_checkpoint_meta(model, split, config, meta,
                                                                   device))
    return {"description": f"book recipe: ResNet-{config.depth} width {config.width}, decode "
                           "once, tensor flip+crop, channels-last, warmup_cosine SGD, label "
                           "smoothing, best validation epoch, flip TTA"
                           + (", bfloat16 autocast" if bf16 else ""),
            "test_accuracy": round(test["accuracy"], 4),
            "valid_accuracy": round(max(row["valid_acc"] for row in history), 4),
            "train_seconds": round(seconds, 2), "train_cpu_seconds": round(cpu, 1),
            "train_images_per_second": round(seen / seconds, 1),
            "peak_rss_mb": peak_rss_mb(), "epochs": config.epochs, "best_epoch": best_epoch,
            "parameters": count_parameters(model), "train_images": len(split.fit.labels),
            "bfloat16": bf16, "bfloat16_choice": meta["bfloat16"], "config": config.to_dict(),
            "per_class_accuracy": dict(zip(split.classes,
                                           [round(a, 4) for a in test["per_class_accuracy"]]))}


def format_table(recipes: dict, ratios: dict) -> str:
    """The race as a small text table."""
    lines = [f"{'recipe':<6} {'epochs':>6} {'accuracy':>9} {'train s':>8} {'images/s':>9} "
             f"{'peak MB':>8}"]
    for name, r in recipes.items():
        lines.append(f"{name:<6} {r['epochs']:>6} {r['test_accuracy']:>9.4f} "
                     f"{r['train_seconds']:>8.1f} {r['train_images_per_second']:>9.0f} "
                     f"{r['peak_rss_mb']:>8.0f}")
    lines.append(f"ratios: time (seed/book) {ratios['time']}x, "
                 f"error (seed/book) {ratios['error']}x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "cifar10",
                        help="CIFAR-10 ImageFolder root with train/ and test/ "
                             "(default data/cifar10)")
    parser.add_argument("--json", type=Path,
                        default=REPO / "benchmarks" / "results" / "cifar10_race.json",
                        help="where to write the results "
                             "(default benchmarks/results/cifar10_race.json)")
    parser.add_argument("--seed-epochs", type=int, default=5,
                        help="epochs of the SimpleCNN baseline (default 5)")
    parser.add_argument("--book-epochs", type=int, default=None,
                        help=f"epochs of the book recipe (default {Cifar10Config().epochs})")
    parser.add_argument("--save-model", type=Path, default=None,
                        help="also save the book's model there, as chapter 8 loads it "
                             "(data/models/cifar10_resnet.pt)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for both recipes (default: torch's, one per core)")
    parser.add_argument("--progress", action="store_true",
                        help="show the book recipe's epochs (validation accuracy) on stderr")
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda or mps (default $BOOK_DEVICE or auto)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run both recipes, print the table and write the JSON; return the payload."""
    args = parse_args(argv)
    check_race_data(args.data, "CIFAR-10", "cifar10")
    device = get_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = Cifar10Config()
    if args.book_epochs is not None:
        config = dataclasses.replace(config, epochs=args.book_epochs)
    load_before = os.getloadavg()
    recipes = {"seed": race_seed(args.data, args.seed_epochs, device)}
    recipes["book"] = race_book(args.data, config, device, args.save_model,
                                args.progress)
    seed, book = recipes["seed"], recipes["book"]
    ratios = {"time": ratio(seed["train_seconds"], book["train_seconds"]),
              "error": ratio(1 - seed["test_accuracy"], 1 - book["test_accuracy"])}
    words = ["python", "benchmarks/cifar10_race.py", *(sys.argv[1:] if argv is None else argv)]
    payload = {
        "command": shlex.join(words), "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "device": describe_device(device),
        "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": load_average_span(load_before),
        "platform": platform.platform(), "data": display_path(args.data),
        "test_images": len(datasets.ImageFolder(str(args.data / "test"))),
        "recipes": recipes, "ratios": ratios,
    }
    print(format_table(recipes, ratios), flush=True)
    write_json_atomically(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
