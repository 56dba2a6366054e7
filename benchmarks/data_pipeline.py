"""Images per second over one epoch of an ImageFolder training set, for four input pipelines.

1. `imagefolder_workers0`: ImageFolder + PIL + ToTensor, DataLoader(num_workers=0) - the seed's way.
2. `imagefolder_workers2`: the same with num_workers=2 (worker start-up included: it is one epoch).
3. `imagefolder_augmented_workers0`: ImageFolder with RandomCrop(32, padding=4), RandomHorizontalFlip,
   ToTensor and Normalize, num_workers=0 - the same augmentation as the tensor paths.
4. `tensor_dataset`: every image decoded once into a uint8 tensor (`load_image_folder_as_tensors`,
   timed separately as `decode_seconds`), then DataLoader(TensorImageDataset) with the batch-level
   `random_flip_crop` and `normalize_images` on each batch.
5. `tensor_batches`: the same decoded tensor, batched by `TensorBatches` (no DataLoader), same
   augmentation: the book's fast path, which must be at least 10x `imagefolder_workers0`.

Every pipeline shuffles and uses batches of 50. Each epoch is timed `--repeats` times and the median
is kept. PyTorch runs on `--threads` threads (default 1, as in a DataLoader worker): the tensor
paths are many small operations, and splitting each over OpenMP threads costs more than it saves,
up to 100x more when other processes keep the cores busy. Usage (from the repository root):

    python benchmarks/data_pipeline.py                         # full cifar2, writes the JSON
    python benchmarks/data_pipeline.py --data data/sample/cifar2 --json /tmp/data_pipeline.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from torchbook.datasets import (CIFAR2_MEAN, CIFAR2_STD, TensorBatches, TensorImageDataset,
                                load_image_folder_as_tensors, normalize_images, random_flip_crop)

from common import REPO, cpu_model, display_path, write_json_atomically

TARGET_RATIO = 10.0


def time_epoch(make_batches: Callable[[], Iterable], prepare: Callable = lambda x: x) -> float:
    """Seconds to draw every batch of one epoch (and `prepare` its images)."""
    start = time.perf_counter()
    for images, _ in make_batches():
        prepare(images)
    return time.perf_counter() - start


def median_epoch(make_batches: Callable[[], Iterable], repeats: int, prepare: Callable = lambda x: x) -> float:
    """Median over `repeats` epochs of `time_epoch`."""
    return statistics.median(time_epoch(make_batches, prepare) for _ in range(repeats))


def augment_batch(images: torch.Tensor) -> torch.Tensor:
    """The tensor paths' augmentation: flip + padded crop on the uint8 batch, then normalise."""
    return normalize_images(random_flip_crop(images, padding=4), CIFAR2_MEAN, CIFAR2_STD)


def imagefolder_loader(train_dir: Path, batch_size: int, workers: int, augment: bool) -> DataLoader:
    """The classic pipeline: ImageFolder decoding JPEGs with PIL on every access."""
    steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    steps += [transforms.ToTensor()] + ([transforms.Normalize(CIFAR2_MEAN, CIFAR2_STD)] if augment else [])
    data = datasets.ImageFolder(train_dir, transform=transforms.Compose(steps))
    return DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers)


def run(data: Path, batch_size: int, repeats: int) -> dict:
    """Time every pipeline on `data`/train and return the results as a JSON-ready dict."""
    train_dir = data / "train"
    n_images = len(datasets.ImageFolder(train_dir))
    results = {}

    def record(name: str, label: str, workers: int, seconds: float) -> None:
        results[name] = {"pipeline": label, "num_workers": workers, "epoch_seconds": round(seconds, 6),
                         "images_per_second": round(n_images / seconds, 1)}
        print(f"{label:<50} workers={workers}  {seconds:7.3f} s  {n_images / seconds:10.0f} images/s",
              flush=True)

    for workers in (0, 2):
        seconds = median_epoch(lambda: imagefolder_loader(train_dir, batch_size, workers, False), repeats)
        record(f"imagefolder_workers{workers}", "ImageFolder + ToTensor", workers, seconds)
    seconds = median_epoch(lambda: imagefolder_loader(train_dir, batch_size, 0, True), repeats)
    record("imagefolder_augmented_workers0", "ImageFolder + crop/flip + Normalize", 0, seconds)

    start = time.perf_counter()
    images, labels, _ = load_image_folder_as_tensors(train_dir)
    decode_seconds = time.perf_counter() - start
    print(f"decode once into a uint8 tensor {tuple(images.shape)}: {decode_seconds:.3f} s", flush=True)

    tensor_set = TensorImageDataset(images, labels)
    seconds = median_epoch(lambda: DataLoader(tensor_set, batch_size=batch_size, shuffle=True), repeats,
                           augment_batch)
    record("tensor_dataset", "decoded tensor + DataLoader + batch crop/flip", 0, seconds)
    seconds = median_epoch(lambda: TensorBatches(images, labels, batch_size, shuffle=True), repeats,
                           augment_batch)
    record("tensor_batches", "decoded tensor + TensorBatches + batch crop/flip", 0, seconds)

    base = results["imagefolder_workers0"]["images_per_second"]
    ratios = {name: round(results[name]["images_per_second"] / base, 1)
              for name in ("imagefolder_workers2", "tensor_dataset", "tensor_batches")}
    return {"images": n_images, "batch_size": batch_size, "repeats": repeats,
            "decode_seconds": round(decode_seconds, 3),
            "decode_images_per_second": round(n_images / decode_seconds, 1),
            "tensor_dataset_first_epoch_images_per_second":  # decoding included
                round(n_images / (decode_seconds + results["tensor_dataset"]["epoch_seconds"]), 1),
            "results": results, "ratios_vs_imagefolder_workers0": ratios}



def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "cifar2",
                        help="an ImageFolder root with a train/ folder (default data/cifar2)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "data_pipeline.json",
                        help="where to write the results (default benchmarks/results/data_pipeline.json)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="epochs per pipeline; the median is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.data / "train").is_dir():
        parser.error(f"{args.data}/train is not a folder; run `make data` or pass --data")

    report = {
        "command": " ".join(["python", "benchmarks/data_pipeline.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpu_cores": os.cpu_count(), "cpu_model": cpu_model(), "torch_threads": torch.get_num_threads(),
        "data": display_path(args.data),
    }
    report.update(run(args.data, args.batch_size, args.repeats))
    ratios = report["ratios_vs_imagefolder_workers0"]
    report["tensor_batches_at_least_10x"] = ratios["tensor_batches"] >= TARGET_RATIO
    print(f"vs ImageFolder (num_workers=0): TensorBatches (the book's fast path) {ratios['tensor_batches']:.1f}x "
          f"(target >= {TARGET_RATIO:.0f}x), DataLoader over the tensor {ratios['tensor_dataset']:.1f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.json, report)
    print(f"wrote {display_path(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
