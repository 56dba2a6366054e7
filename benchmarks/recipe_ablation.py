"""Ablation of the book's recipe: what each idea costs or buys, measured on this machine.

Two measurements per variant (one idea changed from the book's `RecipeConfig`):

- speed: training images per second over `--steps` optimisation steps (after 3 warm-up steps),
  repeated `--rounds` times with the variants interleaved (A B C A B C ...); the best round is
  kept, because other processes on a shared machine can only slow a round down;
- quality (unless `--speed-only`): a full training run from scratch per seed (`--seeds`) on the
  9,000 fitting images of chapter 3's split, then validation accuracy and ROC AUC on its 1,000
  held-out images (with and without test-time flip averaging) and the training wall time; the
  entry keeps every run and their mean. The ablation informs the recipe's choices, so it never
  predicts the test images: the test set is used once, by the race (`cifar2_race.py`).

Usage (from the repository root):

    python benchmarks/recipe_ablation.py --seeds 0 1 2            # full cifar2, writes the JSON
    python benchmarks/recipe_ablation.py --speed-only --variants book no_channels_last
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

# Threads that wait sleep instead of spinning: on a busy machine (more runnable threads than cores)
# spinning OpenMP threads made training up to 30x slower. It must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from torchbook.datasets import load_image_folder_as_tensors
from torchbook.recipe import (RecipeConfig, evaluate, make_optimizer, model_on_device, recipe_batch,
                              smoothed_bce, train_recipe)
from torchbook.training import train_step
from torchbook.zoo import validation_split

from common import REPO, cpu_model, load_average_span, write_json_atomically

BOOK = RecipeConfig()

# name -> (what changes, config changes, extra context: "threads1", "bf16" or "compile")
VARIANTS: dict[str, tuple[str, dict, str]] = {
    "book": ("the book's recipe", {}, ""),
    "no_channels_last": ("default (NCHW) memory format", {"channels_last": False}, ""),
    "no_batch_norm": ("no BatchNorm (lr 0.05: 0.2 diverges)", {"batch_norm": False, "lr": 0.05}, ""),
    "constant_lr": ("constant lr 0.05, no warm-up/cosine", {"schedule": "constant", "lr": 0.05}, ""),
    "no_label_smoothing": ("label smoothing 0", {"label_smoothing": 0.0}, ""),
    "no_augmentation": ("no flip / padded crop", {"augment": False}, ""),
    "batch_64": ("batch 64, lr 0.1", {"batch_size": 64, "lr": 0.1}, ""),
    "batch_256": ("batch 256, lr 0.4", {"batch_size": 256, "lr": 0.4}, ""),
    "wider_32_64_128": ("widths 32-64-128", {"widths": (32, 64, 128)}, ""),
    "one_thread": ("torch.set_num_threads(1)", {}, "threads1"),
    "bf16_autocast": ("bfloat16 autocast on CPU", {}, "bf16"),
    "torch_compile": ("torch.compile(model)", {}, "compile"),
}


@contextlib.contextmanager
def variant_context(extra: str) -> Iterator[None]:
    """Set the thread count or autocast a variant asks for, and undo it afterwards."""
    threads = torch.get_num_threads()
    if extra == "threads1":
        torch.set_num_threads(1)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if extra == "bf16" else contextlib.nullcontext()
    try:
        with autocast:
            yield
    finally:
        torch.set_num_threads(threads)


def speed_runner(config: RecipeConfig, extra: str, images: torch.Tensor,
                 labels: torch.Tensor) -> Callable[[int], float]:
    """Build a model for the variant; return a function that times `steps` training steps."""
    device = torch.device("cpu")
    model = model_on_device(config, device)
    if extra == "compile":
        model = torch.compile(model)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(0)
    loss_fn = partial(smoothed_bce, smoothing=config.label_smoothing)

    def run(steps: int) -> float:
        with variant_context(extra):
            start = time.perf_counter()
            for _ in range(steps):
                index = torch.randint(0, len(labels), (config.batch_size,), generator=generator)
                x = recipe_batch(images[index], config, device, generator)
                train_step(model, (x, labels[index]), loss_fn, optimizer, device)
            return time.perf_counter() - start

    run(3)  # warm-up (and compilation for torch.compile)
    return run


def measure_speed(names: list[str], images: torch.Tensor, labels: torch.Tensor, images_per_round: int,
                  rounds: int) -> dict[str, float]:
    """Best-of-`rounds` training images per second for each variant, rounds interleaved."""
    runners, steps, best = {}, {}, {}
    for name in names:
        _, changes, extra = VARIANTS[name]
        config = dataclasses.replace(BOOK, **changes)
        runners[name] = speed_runner(config, extra, images, labels)
        steps[name] = max(1, images_per_round // config.batch_size)
    for _ in range(rounds):
        for name in names:
            seconds = runners[name](steps[name])
            rate = steps[name] * dataclasses.replace(BOOK, **VARIANTS[name][1]).batch_size / seconds
            best[name] = max(best.get(name, 0.0), rate)
    return best


def measure_quality(name: str, fit: tuple, valid: tuple, seed: int = 0) -> dict:
    """Train the variant from scratch with `seed`; return its training seconds and validation metrics."""
    _, changes, extra = VARIANTS[name]
    config = dataclasses.replace(BOOK, seed=seed, **changes)
    if extra == "compile":
        return {}
    load_before = os.getloadavg()
    with variant_context(extra):
        start = time.perf_counter()
        model, _ = train_recipe(*fit, config)
        seconds = time.perf_counter() - start
        with_tta = evaluate(model, *valid, tta=True)
        without_tta = evaluate(model, *valid, tta=False)
    return {"train_seconds": round(seconds, 2),
            "valid_accuracy": round(with_tta["accuracy"], 4), "valid_auc": round(with_tta["auc"], 4),
            "valid_accuracy_no_tta": round(without_tta["accuracy"], 4),
            "valid_auc_no_tta": round(without_tta["auc"], 4), "load_average": load_average_span(load_before)}


QUALITY_KEYS = ("train_seconds", "valid_accuracy", "valid_auc", "valid_accuracy_no_tta",
                "valid_auc_no_tta")


def record_quality(entry: dict, seed: int, quality: dict) -> None:
    """Add one seed's run to a variant's entry; its top-level metrics become the mean over seeds."""
    if not quality:
        return
    runs = entry.setdefault("runs", [])
    runs[:] = [run for run in runs if run["seed"] != seed] + [{"seed": seed, **quality}]
    for key in QUALITY_KEYS:
        entry[key] = round(sum(run[key] for run in runs) / len(runs), 4)
    entry["seeds"] = len(runs)



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "cifar2")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "recipe_ablation.json")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds (best kept)")
    parser.add_argument("--images", type=int, default=2560, help="training images per speed round")
    parser.add_argument("--valid-images", type=int, default=1000,
                        help="training images held out for validation (chapter 3's split)")
    parser.add_argument("--speed-only", action="store_true", help="skip the full training runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds of the quality runs (metrics: the mean over seeds)")
    parser.add_argument("--quality-only", action="store_true", help="skip the speed rounds")
    parser.add_argument("--merge", action="store_true",
                        help="update the variants already in --json instead of starting afresh")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the ablation, print a table and write the JSON."""
    args = parse_args(argv)
    train_images, train_labels, _ = load_image_folder_as_tensors(args.data / "train")
    fit_index, valid_index = validation_split(len(train_labels), args.valid_images)
    fit = (train_images[fit_index], train_labels[fit_index])
    valid = (train_images[valid_index], train_labels[valid_index])
    command = " ".join(["python", "benchmarks/recipe_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    payload = {"commands": [], "variants": {}}
    if args.merge and args.json.is_file():
        payload = json.loads(args.json.read_text())
    payload.update({"date": dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
                    "threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "book_config": BOOK.to_dict(),
                    "fit_images": len(fit[1]), "valid_images": len(valid[1])})
    payload["commands"] = [*payload.get("commands", []), command]
    results = payload["variants"]
    if not args.quality_only:
        speed = measure_speed(args.variants, *fit, args.images, args.rounds)
        for name in args.variants:
            results.setdefault(name, {}).update({
                "change": VARIANTS[name][0], "train_images_per_second": round(speed[name], 1),
                "speed_vs_book": round(speed[name] / speed["book"], 3) if "book" in speed else None})
        write_json_atomically(args.json, payload)
    for seed in args.seeds:
        for name in ([] if args.speed_only else args.variants):
            quality = measure_quality(name, fit, valid, seed)
            record_quality(results.setdefault(name, {"change": VARIANTS[name][0]}), seed, quality)
            print(json.dumps({name: {"seed": seed, **quality}}), flush=True)
            write_json_atomically(args.json, payload)  # after every run: a crash keeps the rest
    print(json.dumps(results, indent=1))
    return payload


if __name__ == "__main__":
    main()
