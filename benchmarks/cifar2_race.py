"""Race the book's training recipe against the source tutorial's, on the same cifar2 data.

1. `seed`: the source tutorial's recipe exactly - `ImageFolder` + `ToTensor`, its `Net` with a sigmoid
   output and `BCELoss`, SGD lr 0.01, batches of 50, shuffled, 20 epochs.
2. `book`: the book's fast recipe (`torchbook.recipe`, taught in chapter 3), from scratch.

Both run one after the other in this process. `train_seconds` is the wall time of training with the
data decoding included (the seed decodes JPEGs every epoch; the book decodes them once into a uint8
tensor). Usage (from the repository root; `make bench` runs the first line):

    python benchmarks/cifar2_race.py                      # full cifar2, writes the JSON
    python benchmarks/cifar2_race.py --data data/sample/cifar2 --seed-epochs 1 --book-epochs 1 \\
        --json /tmp/race.json                              # a quick check on the sample
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

# Threads that wait sleep instead of spinning: on a busy machine (more runnable threads than cores)
# spinning OpenMP threads made training up to 30x slower. It must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from torchbook.datasets import load_image_folder_as_tensors
from torchbook.device import describe_device, get_device
from torchbook.evaluation import roc_auc
from torchbook.models import SigmoidNet, count_parameters
from torchbook.recipe import RecipeConfig, evaluate, train_recipe
from torchbook.settings import seed_everything

from common import (REPO, check_race_data, cpu_model, display_path, peak_rss_mb, ratio, train_plain,
                    write_json_atomically)

SEED_PARAMETERS = 54_273


def seed_loader(folder: Path, shuffle: bool) -> DataLoader:
    """The source tutorial's input pipeline: ImageFolder + ToTensor, float targets, batches of 50."""
    data = datasets.ImageFolder(str(folder), transform=transforms.ToTensor(),
                                target_transform=float_target)
    return DataLoader(data, batch_size=50, shuffle=shuffle)


def float_target(label: int) -> torch.Tensor:
    """Class index -> float tensor [label], the target of BCELoss on one sigmoid output."""
    return torch.tensor([label], dtype=torch.float32)


def train_seed(train_dir: Path, epochs: int, device: torch.device) -> tuple[nn.Module, float, int]:
    """Train the source tutorial's model; return it, the training seconds and the images seen."""
    start = time.perf_counter()
    loader = seed_loader(train_dir, shuffle=True)
    model = SigmoidNet().to(device)
    if count_parameters(model) != SEED_PARAMETERS:
        raise RuntimeError(f"the seed Net has {count_parameters(model)} parameters, not {SEED_PARAMETERS}")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seen = train_plain(model, loader, nn.BCELoss(), optimizer, epochs, device)
    return model, time.perf_counter() - start, seen


@torch.no_grad()
def evaluate_seed(model: nn.Module, test_dir: Path, device: torch.device) -> dict:
    """Test accuracy (threshold 0.5) and ROC AUC of the seed model, read the tutorial's way."""
    model.eval()
    probabilities, labels = [], []
    for images, targets in seed_loader(test_dir, shuffle=False):
        probabilities.append(model(images.to(device)).view(-1).cpu())
        labels.append(targets.view(-1))
    proba, labels = torch.cat(probabilities), torch.cat(labels)
    accuracy = ((proba > 0.5).float() == labels).float().mean().item()
    return {"accuracy": accuracy, "auc": roc_auc(proba, labels)}


def race_seed(data: Path, epochs: int, device: torch.device) -> dict:
    """Run the `seed` recipe and return its JSON entry."""
    seed_everything(0)
    model, seconds, seen = train_seed(data / "train", epochs, device)
    metrics = evaluate_seed(model, data / "test", device)
    return {"description": "source tutorial: ImageFolder+ToTensor, Net+Sigmoid, BCELoss, SGD lr 0.01, batch 50",
            "test_accuracy": round(metrics["accuracy"], 4), "test_auc": round(metrics["auc"], 4),
            "train_seconds": round(seconds, 2), "train_images_per_second": round(seen / seconds, 1),
            "peak_rss_mb": peak_rss_mb(), "epochs": epochs, "parameters": count_parameters(model)}


def race_book(data: Path, config: RecipeConfig, device: torch.device) -> dict:
    """Run the book's recipe (decoding included in the time) and return its JSON entry."""
    seed_everything(0)
    start = time.perf_counter()
    images, labels, _ = load_image_folder_as_tensors(data / "train")
    model, history = train_recipe(images, labels, config, device)
    seconds = time.perf_counter() - start
    test_images, test_labels, _ = load_image_folder_as_tensors(data / "test")
    metrics = evaluate(model, test_images, test_labels, device, tta=True)
    steps = len(labels) // config.batch_size if len(labels) >= config.batch_size else 1
    seen = steps * min(config.batch_size, len(labels)) * config.epochs
    return {"description": "book recipe: decode once, tensor flip+crop, BN CNN, channels-last, "
                           "warmup_cosine SGD, label smoothing, flip TTA",
            "test_accuracy": round(metrics["accuracy"], 4), "test_auc": round(metrics["auc"], 4),
            "train_seconds": round(seconds, 2), "train_images_per_second": round(seen / seconds, 1),
            "peak_rss_mb": peak_rss_mb(), "epochs": config.epochs,
            "parameters": count_parameters(model), "config": config.to_dict()}


def format_table(recipes: dict, ratios: dict) -> str:
    """The race as a small text table."""
    lines = [f"{'recipe':<6} {'epochs':>6} {'accuracy':>9} {'auc':>7} {'train s':>8} {'images/s':>9} {'peak MB':>8}"]
    for name, r in recipes.items():
        lines.append(f"{name:<6} {r['epochs']:>6} {r['test_accuracy']:>9.4f} {r['test_auc']:>7.4f} "
                     f"{r['train_seconds']:>8.1f} {r['train_images_per_second']:>9.0f} {r['peak_rss_mb']:>8.0f}")
    lines.append(f"ratios: time (seed/book) {ratios['time']}x, error (seed/book) {ratios['error']}x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "cifar2",
                        help="cifar2 ImageFolder root with train/ and test/ (default data/cifar2)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "cifar2_race.json",
                        help="where to write the results (default benchmarks/results/cifar2_race.json)")
    parser.add_argument("--seed-epochs", type=int, default=20, help="epochs of the seed recipe (default 20)")
    parser.add_argument("--book-epochs", type=int, default=None,
                        help=f"epochs of the book recipe (default {RecipeConfig().epochs})")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or mps (default $BOOK_DEVICE or auto)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run both recipes, print the table and write the JSON; return the payload."""
    args = parse_args(argv)
    check_race_data(args.data, "cifar2", "cifar2")
    device = get_device(args.device)
    config = RecipeConfig() if args.book_epochs is None else RecipeConfig(epochs=args.book_epochs)
    recipes = {"seed": race_seed(args.data, args.seed_epochs, device)}
    recipes["book"] = race_book(args.data, config, device)
    seed, book = recipes["seed"], recipes["book"]
    ratios = {"time": ratio(seed["train_seconds"], book["train_seconds"]),
              "error": ratio(1 - seed["test_accuracy"], 1 - book["test_accuracy"])}
    words = ["python", "benchmarks/cifar2_race.py", *(sys.argv[1:] if argv is None else argv)]
    payload = {
        "command": shlex.join(words), "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "device": describe_device(device),
        "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "platform": platform.platform(), "data": display_path(args.data),
        "test_images": len(datasets.ImageFolder(str(args.data / "test"))),
        "recipes": recipes, "ratios": ratios,
    }
    print(format_table(recipes, ratios), flush=True)
    write_json_atomically(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
