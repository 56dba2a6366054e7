"""Evaluate a checkpoint of `python -m torchbook.train` on an ImageFolder split (chapter 7).

    python -m torchbook.evaluate runs/NAME/best.pt --data data/cifar2/test [--json metrics.json]

prints the loss, the accuracy, the ROC AUC (two classes) and the accuracy of each class. The
checkpoint holds everything needed besides the images: the model's name and width, the classes
and the normalisation of the images it was trained on. Bad input (a missing or empty folder, an
unreadable checkpoint, a checkpoint of another model, classes that do not match, a device this
machine lacks) gives one line on stderr that says what to do, and exit code 2.

The pieces are shared with `torchbook.train`: `load_folder`, `check_run_checkpoint`,
`model_from_meta`, `pick_device`, `predict_logits`, `classification_metrics`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.datasets.folder import find_classes

from torchbook.checkpoints import CheckpointError, first_line, load_weights, read_checkpoint
from torchbook.datasets import load_image_folder_as_tensors, normalize_images
from torchbook.device import CHOICES, available_devices, get_device
from torchbook.models import resnet_by_name

RUN_KEYS = ("model", "width", "classes", "mean", "std")


class InputError(Exception):
    """Bad input from the command line; the message says what to do (exit code 2)."""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse the command line of `python -m torchbook.evaluate`."""
    parser = argparse.ArgumentParser(
        prog="python -m torchbook.evaluate",
        description="Evaluate a checkpoint of python -m torchbook.train on an ImageFolder split.")
    parser.add_argument("checkpoint", type=Path, help="best.pt or last.pt of a training run")
    parser.add_argument("--data", type=Path, required=True,
                        help="an ImageFolder split with the run's classes, e.g. data/cifar2/test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the metrics here")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    parser.add_argument("--device", choices=CHOICES,
                        help="where to compute (default: $BOOK_DEVICE, else auto)")
    return parser.parse_args(argv)


def pick_device(name: Optional[str]) -> torch.device:
    """The device `name` (None: $BOOK_DEVICE or auto); InputError if this machine lacks it."""
    try:
        return get_device(name)
    except (ValueError, RuntimeError) as error:
        if name is None:
            raise InputError(first_line(error)) from error
        raise InputError(f"--device {name} is not available on this machine (it has: "
                         f"{', '.join(available_devices())}); use --device auto or one of "
                         "those.") from error


def folder_problem(folder: Path) -> Optional[str]:
    """Why `folder` cannot be an ImageFolder tree (None if it may be one)."""
    if not folder.is_dir():
        return f"there is no folder {folder}"
    if not any(child.is_dir() for child in folder.iterdir()):
        return f"{folder} has no class folders (it should hold one folder of images per class)"
    return None


def load_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode an ImageFolder tree into uint8 images, labels and classes; InputError if bad."""
    folder = Path(folder)
    problem = folder_problem(folder)
    if problem is None:
        try:
            return load_image_folder_as_tensors(folder)
        except (OSError, RuntimeError, ValueError) as error:  # no images, unreadable, mixed sizes
            problem = f"the images in {folder} cannot be read ({first_line(error)})"
    raise InputError(f"{problem}. Give an ImageFolder tree (one folder of images per class), "
                     "e.g. data/cifar2/test; python -m torchbook.data prepares cifar2.")


def check_run_checkpoint(path: Path, payload: dict) -> dict:
    """The meta of a `torchbook.train` checkpoint; InputError for a checkpoint of anything else."""
    meta = payload.get("meta", {})
    if payload.get("model_class") != "ResNet" or any(key not in meta for key in RUN_KEYS):
        raise InputError(f"{path} is a checkpoint of a {payload.get('model_class')}, not one that "
                         "python -m torchbook.train wrote (no model name, classes and "
                         "normalisation in it). Give the best.pt or last.pt of a training run.")
    return meta


def model_from_meta(meta: dict) -> nn.Module:
    """A fresh model of the architecture a run's meta names (its weights are not loaded)."""
    return resnet_by_name(meta["model"], meta["width"], len(meta["classes"]))


def load_run(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    """The trained model of a run's checkpoint, in eval mode on `device`, and its meta."""
    try:
        payload = read_checkpoint(path)
        meta = check_run_checkpoint(path, payload)
        model = model_from_meta(meta)
        load_weights(path, payload, model)
    except CheckpointError as error:
        raise InputError(str(error)) from error
    return model.to(device).eval(), meta


def check_classes(folder: Path, classes: list[str], meta: dict) -> None:
    """InputError unless the folder's classes are those the run was trained on, in order."""
    if classes != meta["classes"]:
        hint = f" (did you mean {folder / 'test'}?)" if (folder / "test").is_dir() else ""
        raise InputError(f"{folder} has the classes {classes}, but the model was trained on "
                         f"{meta['classes']}{hint}. Give a folder with the run's classes.")


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, mean: Sequence[float],
                   std: Sequence[float], device: torch.device,
                   batch_size: int = 500) -> torch.Tensor:
    """The model's logits (N, classes) for uint8 images, normalised on `device`; on the CPU."""
    model.eval()
    logits = [model(normalize_images(images[start:start + batch_size].to(device), mean, std))
              for start in range(0, len(images), batch_size)]
    return torch.cat(logits).float().cpu()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor,
                           classes: Sequence[str]) -> dict:
    """Cross-entropy loss, accuracy, each class's accuracy, and ROC AUC when there are two."""
    predictions = logits.argmax(dim=1)
    correct = (predictions == labels).float()
    metrics = {"images": len(labels), "loss": F.cross_entropy(logits, labels).item(),
               "accuracy": correct.mean().item(),
               "per_class_accuracy": {name: correct[labels == index].mean().item()
                                      for index, name in enumerate(classes)
                                      if (labels == index).any()}}
    if len(classes) == 2:
        both = len(set(labels.tolist())) == 2
        scores = logits.softmax(dim=1)[:, 1].numpy()
        metrics["auc"] = float(roc_auc_score(labels.numpy(), scores)) if both else float("nan")
    return metrics


def report_lines(metrics: dict) -> list[str]:
    """The lines evaluate prints: loss, accuracy, AUC (two classes), then each class's accuracy."""
    lines = [f"loss      {metrics['loss']:.4f}", f"accuracy  {metrics['accuracy']:.4f}"]
    if "auc" in metrics:
        lines.append(f"auc       {metrics['auc']:.4f}")
    lines.append("accuracy per class:")
    lines += [f"  {name:<14} {value:.4f}" for name, value in metrics["per_class_accuracy"].items()]
    return lines


def write_json(metrics: dict, path: Path) -> None:
    """Write the metrics as JSON to `path`; InputError if it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    except OSError as error:
        raise InputError(f"cannot write {path} ({error.strerror}); give another --json path.") \
            from error


def evaluate(args: argparse.Namespace) -> dict:
    """Load the run's model and the folder, check they match, and compute the metrics."""
    device = pick_device(args.device)
    model, meta = load_run(args.checkpoint, device)
    if folder_problem(args.data) is None:  # the class folders first, before decoding any image
        check_classes(args.data, find_classes(args.data)[0], meta)
    images, labels, classes = load_folder(args.data)
    check_classes(args.data, classes, meta)
    logits = predict_logits(model, images, meta["mean"], meta["std"], device, args.batch_size)
    metrics = {"checkpoint": str(args.checkpoint), "data": str(args.data),
               "model": meta["model"], "epoch": meta.get("epoch")}
    return metrics | classification_metrics(logits, labels, classes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Evaluate from the command line; bad input: one line on stderr and exit code 2."""
    args = parse_args(argv)
    try:
        metrics = evaluate(args)
        if args.json is not None:
            write_json(metrics, args.json)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{metrics['model']} (epoch {metrics['epoch']}) on {metrics['images']} images of "
          f"{args.data}")
    print("\n".join(report_lines(metrics)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
