"""Datasets and transforms taught in chapter 1 (data pipelines), reused by later chapters.

- `to_float_target`: class index -> float tensor of shape [1], the target of a one-logit BCE model.
- `CsvImageDataset`: images listed in a CSV manifest (`path,label`), read with pandas.
- `image_folder_manifest`: the (path, label) table of an ImageFolder tree, for such a manifest.
- `WindowDataset`: sliding windows over a time series (8 days in, the next day out).
- `decode_rgb`, `load_image_folder_as_tensors`: decode an ImageFolder tree once into a uint8 tensor.
- `TensorImageDataset`: a Dataset over those in-memory tensors, with per-image transforms.
- `TensorBatches`: shuffled batches straight from the tensors, with a batch transform.
- `random_flip_crop`: random horizontal flip + padded random crop of a whole batch at once.
- `channel_mean_std`, `CIFAR2_MEAN`, `CIFAR2_STD`, `normalize_images`, `denormalize_images`.
- `balanced_subset`: a seeded sample with as many images of each class (chapter 10's small sets).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

# Per-channel mean and std of the full cifar2 training set (10,000 images, pixels scaled to [0, 1]),
# computed with `channel_mean_std` in chapter 1. ImageNet's are (0.485, 0.456, 0.406) and
# (0.229, 0.224, 0.225).
CIFAR2_MEAN = (0.4983, 0.5073, 0.5179)
CIFAR2_STD = (0.2587, 0.2583, 0.2778)


def to_float_target(label: int) -> torch.Tensor:
    """Turn a class index into a float tensor of shape [1], the target of a one-logit BCE model."""
    return torch.tensor([label], dtype=torch.float32)


def image_folder_manifest(folder: str | Path) -> pd.DataFrame:
    """List an ImageFolder tree as a table of image paths (relative to `folder`) and class indices."""
    folder = Path(folder)
    _, class_to_idx = find_classes(folder)
    samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS)
    return pd.DataFrame({
        "path": [Path(path).relative_to(folder).as_posix() for path, _ in samples],
        "label": [label for _, label in samples],
    })


class CsvImageDataset(Dataset):
    """Images listed in a CSV manifest with columns `path` (relative to `root`) and `label`."""

    def __init__(self, manifest: str | Path, root: str | Path | None = None,
                 transform: Optional[Callable] = None, target_transform: Optional[Callable] = None):
        self.table = pd.read_csv(manifest)
        self.root = Path(root) if root is not None else Path(manifest).parent
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[Image.Image | torch.Tensor, int | torch.Tensor]:
        row = self.table.iloc[index]
        image = Image.open(self.root / row["path"]).convert("RGB")
        label = int(row["label"])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


class WindowDataset(Dataset):
    """Sliding windows over a series of shape (T,) or (T, F): `window` steps in, the next step out."""

    def __init__(self, series: np.ndarray | torch.Tensor | Sequence[float], window: int = 8):
        self.series = torch.as_tensor(series, dtype=torch.float32)
        self.window = window

    def __len__(self) -> int:
        return max(len(self.series) - self.window, 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        inputs = self.series[index:index + self.window]
        target = self.series[index + self.window]
        return inputs, target


def decode_rgb(path: str | Path) -> torch.Tensor:
    """Decode an image file into a uint8 tensor of shape (3, H, W)."""
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def load_image_folder_as_tensors(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of an ImageFolder tree once: uint8 images (N, 3, H, W), labels, classes."""
    classes, class_to_idx = find_classes(folder)
    samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS)
    images = torch.stack([decode_rgb(path) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return images, labels, classes


class TensorImageDataset(Dataset):
    """A Dataset over in-memory images (N, C, H, W) and labels, with optional per-item transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: Optional[Callable] = None, target_transform: Optional[Callable] = None):
        self.images = images
        self.labels = labels
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        image, label = self.images[index], int(self.labels[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


def random_flip_crop(batch: torch.Tensor, padding: int = 4,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Flip each image of a batch left-right with probability 1/2 and crop it back after zero-padding."""
    n, c, h, w = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding)).flatten(2)  # (n, c, pixels)
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator)
    flip = torch.rand(n, 1, 1, generator=generator) < 0.5
    columns = torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w)) + left  # (n, 1, w)
    rows = torch.arange(h).view(1, h, 1) + top                                       # (n, h, 1)
    pixels = (rows * (w + 2 * padding) + columns).view(n, 1, h * w).expand(n, c, h * w)
    return padded.gather(2, pixels.to(batch.device)).view(n, c, h, w)


class TensorBatches:
    """Batches of in-memory images and labels, shuffled each epoch, with an optional batch transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 50,
                 shuffle: bool = False, drop_last: bool = False,
                 transform: Optional[Callable] = None, generator: Optional[torch.Generator] = None):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform, self.generator = transform, generator

    def __len__(self) -> int:
        count = len(self.labels) / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.transform is not None:
                images = self.transform(images)
            yield images, self.labels[index]


def channel_mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the [0, 1] scale of ToTensor."""
    means, stds = [], []
    for channel in range(images.shape[1]):
        pixels = images[:, channel].double() / 255
        means.append(pixels.mean().item())
        stds.append(pixels.std(unbiased=False).item())
    return tuple(means), tuple(stds)


def normalize_images(images: torch.Tensor, mean: Sequence[float] = CIFAR2_MEAN,
                     std: Sequence[float] = CIFAR2_STD) -> torch.Tensor:
    """Scale uint8 images (..., C, H, W) to [0, 1] floats, then standardise each channel."""
    mean = torch.tensor(mean, device=images.device).view(-1, 1, 1)
    std = torch.tensor(std, device=images.device).view(-1, 1, 1)
    return (images.float() / 255 - mean) / std


def denormalize_images(images: torch.Tensor, mean: Sequence[float] = CIFAR2_MEAN,
                       std: Sequence[float] = CIFAR2_STD) -> torch.Tensor:
    """Undo `Normalize(mean, std)` for display: float images back in [0, 1]."""
    mean = torch.tensor(mean, device=images.device).view(-1, 1, 1)
    std = torch.tensor(std, device=images.device).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def balanced_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of a seeded random sample of `n` labels, the same number of each class."""
    classes = labels.unique()
    if n % len(classes):
        raise ValueError(f"n={n} does not split evenly into {len(classes)} classes: "
                         "pick a multiple")
    generator = torch.Generator().manual_seed(seed)
    chosen, per_class = [], n // len(classes)
    for label in classes:
        members = (labels == label).nonzero().view(-1)
        if len(members) < per_class:
            raise ValueError(f"class {label.item()} has {len(members)} images, fewer than the "
                             f"{per_class} asked for: pick a smaller n")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)[torch.randperm(n, generator=generator)]
