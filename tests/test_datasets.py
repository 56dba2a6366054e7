"""Tests for torchbook.datasets: the datasets, loaders and transforms of chapter 1."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from taught_code import assert_taught_as_shipped
from torchbook import datasets as tb_datasets
from torchbook.datasets import (CIFAR2_MEAN, CIFAR2_STD, CsvImageDataset, TensorBatches,
                                TensorImageDataset, WindowDataset, channel_mean_std, decode_rgb,
                                denormalize_images, image_folder_manifest,
                                load_image_folder_as_tensors, normalize_images, random_flip_crop,
                                to_float_target)

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "notebooks" / "01_data_pipelines.ipynb"
SAMPLE_TRAIN = REPO / "data" / "sample" / "cifar2" / "train"
FULL_TRAIN = REPO / "data" / "cifar2" / "train"
TAUGHT = ["to_float_target", "image_folder_manifest", "CsvImageDataset", "WindowDataset",
          "decode_rgb", "load_image_folder_as_tensors", "TensorImageDataset", "TensorBatches", "random_flip_crop",
          "channel_mean_std", "normalize_images", "denormalize_images"]


@pytest.fixture(scope="module")
def sample_tensors():
    """The cifar2 sample's training images decoded once."""
    return load_image_folder_as_tensors(SAMPLE_TRAIN)


def _tiny_folder(root: Path, suffix: str) -> Path:
    """Write a 2-class ImageFolder of 3 + 2 random 8 x 6 images and return its root."""
    rng = np.random.default_rng(0)
    for name, count in (("b_second", 2), ("a_first", 3)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
    (root / "a_first" / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------- targets and manifests
def test_to_float_target_is_a_float_vector_of_one() -> None:
    """Labels become float tensors of shape [1], as BCEWithLogitsLoss wants for one logit."""
    target = to_float_target(1)
    assert target.dtype == torch.float32 and target.shape == (1,) and target.item() == 1.0
    assert to_float_target(0).item() == 0.0


def test_to_float_target_pickles_by_name() -> None:
    """The named target transform survives pickling (what spawned DataLoader workers need)."""
    assert pickle.loads(pickle.dumps(to_float_target)) is to_float_target


def test_image_folder_manifest_lists_what_image_folder_finds() -> None:
    """The manifest has ImageFolder's samples, in order, with paths relative to the folder."""
    manifest = image_folder_manifest(SAMPLE_TRAIN)
    reference = datasets.ImageFolder(SAMPLE_TRAIN)
    assert list(manifest.columns) == ["path", "label"]
    assert manifest["label"].tolist() == reference.targets
    assert [SAMPLE_TRAIN / p for p in manifest["path"]] == [Path(p) for p, _ in reference.samples]
    assert manifest["path"].iloc[0] == "0_airplane/0000.jpg"


def test_csv_image_dataset_serves_the_same_items_as_image_folder(tmp_path: Path) -> None:
    """Items read through a CSV manifest equal ImageFolder's, transforms included."""
    manifest_file = tmp_path / "manifest.csv"
    image_folder_manifest(SAMPLE_TRAIN).to_csv(manifest_file, index=False)
    csv_set = CsvImageDataset(manifest_file, root=SAMPLE_TRAIN, transform=transforms.ToTensor(),
                              target_transform=to_float_target)
    reference = datasets.ImageFolder(SAMPLE_TRAIN, transform=transforms.ToTensor())
    assert len(csv_set) == len(reference) == 200
    for i in (0, 99, 100, 199):
        image, target = csv_set[i]
        assert torch.equal(image, reference[i][0])
        assert torch.equal(target, torch.tensor([float(reference[i][1])]))


def test_csv_image_dataset_defaults_root_to_the_manifest_folder(tmp_path: Path) -> None:
    """Without `root`, paths are relative to the CSV file's folder; no transform gives PIL images."""
    folder = _tiny_folder(tmp_path / "images", ".png")
    image_folder_manifest(folder).to_csv(folder / "manifest.csv", index=False)
    csv_set = CsvImageDataset(folder / "manifest.csv")
    image, label = csv_set[4]
    assert isinstance(image, Image.Image) and image.size == (8, 6) and label == 1
    assert [csv_set[i][1] for i in range(len(csv_set))] == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------- windows
def test_window_dataset_on_a_1d_series() -> None:
    """T steps give T - window items: `window` values in, the next value out."""
    windows = WindowDataset(np.arange(20), window=8)
    assert len(windows) == 12
    inputs, target = windows[0]
    assert inputs.tolist() == list(range(8)) and target.item() == 8
    inputs, target = windows[11]
    assert inputs.tolist() == list(range(11, 19)) and target.item() == 19
    assert inputs.dtype == torch.float32
    with pytest.raises(IndexError):
        windows[12]
    with pytest.raises(IndexError):
        windows[-1]


def test_window_dataset_on_a_2d_series_batches_with_a_dataloader() -> None:
    """A (T, F) series gives (window, F) inputs and (F,) targets, and batches stack them."""
    series = torch.arange(30.0).view(10, 3)
    windows = WindowDataset(series, window=4)
    assert len(windows) == 6
    inputs, target = windows[2]
    assert torch.equal(inputs, series[2:6]) and torch.equal(target, series[6])
    batch_inputs, batch_targets = next(iter(DataLoader(windows, batch_size=6)))
    assert batch_inputs.shape == (6, 4, 3) and batch_targets.shape == (6, 3)
    assert list(windows) and len(list(windows)) == 6  # plain iteration stops at the end


def test_window_dataset_shorter_than_the_window_is_empty() -> None:
    """A series no longer than the window has no items."""
    assert len(WindowDataset([1.0, 2.0, 3.0], window=3)) == 0


def test_window_dataset_on_the_covid_series() -> None:
    """The chapter's data: 46 daily changes give 38 windows of (8, 3)."""
    import pandas as pd
    from torchbook.settings import data_dir
    path = data_dir() / "covid-19.csv"
    if not path.is_file():
        pytest.skip("data/covid-19.csv is not prepared")
    daily = pd.read_csv(path, sep="\t").set_index("date").diff().dropna()
    windows = WindowDataset(daily.to_numpy(), window=8)
    inputs, target = windows[len(windows) - 1]
    assert len(windows) == len(daily) - 8 and inputs.shape == (8, 3) and target.shape == (3,)
    assert torch.allclose(target, torch.tensor(daily.iloc[-1].to_numpy(), dtype=torch.float32))


# ---------------------------------------------------------------- decode once
def test_load_image_folder_as_tensors_matches_image_folder(sample_tensors) -> None:
    """uint8 (N, 3, 32, 32) images, int64 labels and classes, in ImageFolder's order and values."""
    images, labels, classes = sample_tensors
    reference = datasets.ImageFolder(SAMPLE_TRAIN, transform=transforms.PILToTensor())
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == reference.targets
    assert classes == reference.classes == ["0_airplane", "1_automobile"]
    assert torch.equal(images, torch.stack([image for image, _ in reference]))


def test_decode_rgb_gives_channels_first_bytes(tmp_path: Path) -> None:
    """A PNG (with alpha) and a greyscale file both become uint8 (3, H, W), pixel for pixel."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(pixels[..., 0], mode="L").save(tmp_path / "grey.png")
    rgba = decode_rgb(tmp_path / "rgba.png")
    assert rgba.shape == (3, 5, 7) and rgba.dtype == torch.uint8
    assert torch.equal(rgba, torch.from_numpy(pixels[..., :3]).permute(2, 0, 1))
    grey = decode_rgb(str(tmp_path / "grey.png"))
    assert torch.equal(grey, torch.from_numpy(pixels[..., 0]).expand(3, 5, 7))


def test_load_image_folder_as_tensors_reads_png_and_skips_other_files(tmp_path: Path) -> None:
    """Works on any ImageFolder tree: PNG files, odd sizes, non-image files ignored."""
    folder = _tiny_folder(tmp_path, ".png")
    images, labels, classes = load_image_folder_as_tensors(folder)
    assert images.shape == (5, 3, 6, 8) and labels.tolist() == [0, 0, 0, 1, 1]
    assert classes == ["a_first", "b_second"]
    assert torch.equal(images[0].permute(1, 2, 0), torch.from_numpy(np.array(Image.open(folder / "a_first" / "0.png"))))


def test_tensor_image_dataset_items_and_transforms(sample_tensors) -> None:
    """Items are (image, int label) by default; transforms apply per item."""
    images, labels, _ = sample_tensors
    plain = TensorImageDataset(images, labels)
    image, label = plain[150]
    assert len(plain) == 200 and torch.equal(image, images[150]) and label == 1 and isinstance(label, int)
    shaped = TensorImageDataset(images, labels, transform=lambda x: x.float() / 255,
                                target_transform=to_float_target)
    image, target = shaped[150]
    assert image.dtype == torch.float32 and image.max() <= 1.0 and torch.equal(target, torch.tensor([1.0]))
    batch, targets = next(iter(DataLoader(shaped, batch_size=50)))
    assert batch.shape == (50, 3, 32, 32) and targets.shape == (50, 1)


def test_tensor_batches_cover_every_image_once_per_epoch() -> None:
    """Shuffled batches visit each index once; len counts batches; drop_last drops the tail."""
    images = torch.arange(23).view(23, 1, 1, 1).expand(23, 3, 2, 2).contiguous()
    labels = torch.arange(23)
    batches = TensorBatches(images, labels, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = [label for _, batch_labels in batches for label in batch_labels.tolist()]
    assert len(batches) == 5 and sorted(seen) == list(range(23)) and seen != list(range(23))
    for batch_images, batch_labels in batches:
        assert torch.equal(batch_images[:, 0, 0, 0], batch_labels)  # images stay with their labels
    dropped = TensorBatches(images, labels, batch_size=5, drop_last=True)
    assert len(dropped) == 4 and [len(b) for _, b in dropped] == [5, 5, 5, 5]
    assert torch.equal(torch.cat([b for _, b in dropped]), torch.arange(20))  # no shuffle: in order


def test_tensor_batches_shuffle_is_seeded_and_changes_each_epoch() -> None:
    """The same generator seed gives the same order; the next epoch gets a new one."""
    labels = torch.arange(100)
    first = TensorBatches(labels, labels, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(3))
    second = TensorBatches(labels, labels, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(3))
    epoch_a = torch.cat([b for _, b in first])
    assert torch.equal(epoch_a, torch.cat([b for _, b in second]))
    assert not torch.equal(epoch_a, torch.cat([b for _, b in first]))


def test_tensor_batches_apply_the_batch_transform() -> None:
    """The transform receives whole batches."""
    images = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    batches = TensorBatches(images, torch.zeros(10), batch_size=4, transform=lambda b: b.float() + len(b))
    assert [b[0, 0, 0, 0].item() for b, _ in batches] == [4.0, 4.0, 2.0]


# ---------------------------------------------------------------- augmentation
def _crops_of(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every padded crop of an image and of its mirror image."""
    c, h, w = image.shape
    crops = []
    for candidate in (image, image.flip(-1)):
        padded = torch.nn.functional.pad(candidate, (padding,) * 4)
        crops += [padded[:, y:y + h, x:x + w] for y in range(2 * padding + 1) for x in range(2 * padding + 1)]
    return crops


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_flip_crop_gives_flipped_padded_crops(dtype) -> None:
    """Each output is a padded crop of its input or of its mirror image; shape and dtype stay."""
    batch = torch.randint(1, 256, (16, 3, 10, 12), generator=torch.Generator().manual_seed(0)).to(dtype)
    out = random_flip_crop(batch, padding=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == dtype
    assert not torch.equal(out, batch)
    for image, result in zip(batch, out):
        assert any(torch.equal(result, crop) for crop in _crops_of(image, 2))


def test_random_flip_crop_draws_both_flips_and_all_offsets() -> None:
    """Over many images: about half are mirrored, and shifts cover the whole padding range."""
    column = torch.arange(8, dtype=torch.float32) + 1  # distinct, non-zero columns
    batch = column.expand(2000, 1, 9, 8).contiguous()
    out = random_flip_crop(batch, padding=4, generator=torch.Generator().manual_seed(0))
    middle = out[:, 0, 4, :]  # row 4 of 9 is never padding; it shows the flip and the shift
    flipped = torch.tensor([bool(((row[row > 0].diff()) < 0).all()) for row in middle])
    assert 0.4 < flipped.float().mean() < 0.6
    shifts = {int((row == 0).sum()) * (1 if row[0] == 0 else -1) for row in middle}
    assert shifts == set(range(-4, 5))


def test_random_flip_crop_is_reproducible_with_a_generator() -> None:
    """The same generator seed gives the same augmentation; padding=0 only flips."""
    batch = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    a = random_flip_crop(batch, generator=torch.Generator().manual_seed(5))
    b = random_flip_crop(batch, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    flips_only = random_flip_crop(batch, padding=0, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(-1)) for o, i in zip(flips_only, batch))


# ---------------------------------------------------------------- statistics and normalisation
def test_channel_mean_std_on_a_constructed_tensor() -> None:
    """Channel 0 all black, channel 1 all white, channel 2 half and half."""
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 1] = 255
    images[:2, 2] = 255
    mean, std = channel_mean_std(images)
    assert mean == pytest.approx((0.0, 1.0, 0.5)) and std == pytest.approx((0.0, 0.0, 0.5))


def test_channel_mean_std_agrees_with_numpy(sample_tensors) -> None:
    """Population mean/std per channel, on the [0, 1] scale."""
    images = sample_tensors[0]
    mean, std = channel_mean_std(images)
    pixels = images.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(tuple(pixels.mean(axis=(0, 2, 3))))
    assert std == pytest.approx(tuple(pixels.std(axis=(0, 2, 3))))
    assert all(abs(a - b) < 0.05 for a, b in zip(mean + std, CIFAR2_MEAN + CIFAR2_STD))


@pytest.mark.skipif(not FULL_TRAIN.is_dir(), reason="full cifar2 is not prepared")
def test_cifar2_constants_are_the_full_training_statistics() -> None:
    """CIFAR2_MEAN/CIFAR2_STD are channel_mean_std of the full cifar2 training set (4 decimals)."""
    images, _, _ = load_image_folder_as_tensors(FULL_TRAIN)
    mean, std = channel_mean_std(images)
    assert len(images) == 10_000
    assert CIFAR2_MEAN == pytest.approx(mean, abs=6e-5) and CIFAR2_STD == pytest.approx(std, abs=6e-5)


def test_normalize_images_matches_torchvision_normalize(sample_tensors) -> None:
    """uint8 -> [0, 1] -> Normalize(mean, std), for one image or a batch; denormalize undoes it."""
    images = sample_tensors[0][:10]
    expected = transforms.Normalize(CIFAR2_MEAN, CIFAR2_STD)(images.float() / 255)
    assert torch.allclose(normalize_images(images), expected, atol=1e-6)
    assert torch.allclose(normalize_images(images[0], CIFAR2_MEAN, CIFAR2_STD), expected[0], atol=1e-6)
    assert torch.allclose(denormalize_images(expected), images.float() / 255, atol=1e-6)
    assert denormalize_images(torch.full((1, 3, 2, 2), 100.0)).max() == 1.0  # clamped for display



@pytest.mark.parametrize("name", TAUGHT)
def test_chapter_teaches_the_package_code(name: str) -> None:
    """The chapter's inline definition is exactly torchbook.datasets' source."""
    assert_taught_as_shipped("01_data_pipelines", tb_datasets, name)


# --- chapter 10: small labelled sets -------------------------------------------------------------

def test_balanced_subset_is_seeded_balanced_and_distinct() -> None:
    """n/2 of each class, no index twice, the same for the same seed, another for another seed."""
    labels = torch.tensor([0] * 30 + [1] * 70)
    index = tb_datasets.balanced_subset(labels, 20, seed=3)
    assert len(set(index.tolist())) == 20 and labels[index].bincount().tolist() == [10, 10]
    assert torch.equal(index, tb_datasets.balanced_subset(labels, 20, seed=3))
    assert not torch.equal(index, tb_datasets.balanced_subset(labels, 20, seed=4))


@pytest.mark.parametrize(("n", "message"), [(21, "multiple"), (80, "fewer than")])
def test_balanced_subset_refuses_what_it_cannot_do(n: int, message: str) -> None:
    """An odd n for two classes, or more images of a class than there are, say what to do."""
    with pytest.raises(ValueError, match=message):
        tb_datasets.balanced_subset(torch.tensor([0] * 30 + [1] * 70), n)


def test_chapter_10_teaches_balanced_subset() -> None:
    """What chapter 10 teaches inline is what torchbook.datasets ships."""
    assert_taught_as_shipped("10_reusing_trained_models", tb_datasets, "balanced_subset")
