"""Train a CIFAR ResNet from the command line (chapter 7).

    python -m torchbook.train --model resnet20 --data data/cifar2 --epochs 10 --out runs/NAME

reads `DATA/train` (an ImageFolder tree; never `DATA/test`) once into uint8 tensors, holds out a
seeded validation split, and trains with SGD (Nesterov momentum) under a warm-up + cosine
schedule, flipping, cropping and normalising each batch on the device. After every epoch it
writes, under `--out`:

- `last.pt`: weights, optimizer, scheduler and random-number states, the history and the run's
  settings (`torchbook.checkpoints.save_checkpoint`, atomic), from which `--resume` continues;
- `best.pt`: the weights of the epoch with the best validation accuracy so far;
- `history.csv`: one row per epoch.

Both checkpoints carry what `python -m torchbook.evaluate` needs besides the images: the model's
name and width, the classes and the normalisation (mean and std of the training images).
`--resume` continues the run in `--out` with its saved settings, up to `--epochs` in all. Bad
input gives one line on stderr and exit code 2; Ctrl-C says where the last complete checkpoint
is and exits with 130.

Written to be extended to several processes (DistributedDataParallel): the sampler is made in
`make_sampler`, the model wrapped in `wrap_model`, and every write (`say`, `save_run_state`,
`write_history`) takes a `writer` flag, so that one process alone writes.

`--distributed` (chapter 11) trains on every process that torchrun started:

    torchrun --standalone --nproc_per_node=2 -m torchbook.train --distributed --data ... --out ...

each process takes its share of every batch (`--batch-size` stays the batch of one step over all
processes), DDP averages the gradients, and rank 0 alone writes and prints. When torchrun restarts
the workers after a failure (`--max-restarts`), they continue from `last.pt`.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from torchbook.checkpoints import CheckpointError, read_checkpoint
from torchbook.data import interrupt_on_sigterm
from torchbook.datasets import channel_mean_std
from torchbook.device import CHOICES
from torchbook.distributed import (NotLaunchedByTorchrun, cleanup, init_from_torchrun,
                                   is_distributed, is_main_process, process_device,
                                   restarted_by_torchrun, world_size)
from torchbook.engine import BFLOAT16_CHOICES, SETTINGS, TrainData, train_run
from torchbook.evaluate import InputError, check_run_checkpoint, load_folder, pick_device
from torchbook.models import count_parameters, resnet_by_name
from torchbook.zoo import validation_split


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse the command line of `python -m torchbook.train` (settings left unset are None)."""
    parser = argparse.ArgumentParser(
        prog="python -m torchbook.train",
        description="Train a CIFAR ResNet on DATA/train; checkpoints and history go to --out.",
        epilog="--resume continues the run in --out with its saved settings (model, width, "
               "batch size, lr, ...), up to --epochs in all.")
    add = parser.add_argument
    add("--data", type=Path, required=True,
        help="a folder with train/ (and test/) ImageFolder trees, e.g. data/cifar2")
    add("--out", type=Path, required=True, help="the run's folder (last.pt, best.pt, history.csv)")
    add("--epochs", type=int, default=10, help="epochs in all (default 10)")
    add("--model", help="resnet<depth>, depth 6n + 2: resnet8, resnet20 (default), resnet56, ...")
    add("--width", type=int, help="channels of the first stage (default 16)")
    add("--batch-size", type=int, help="images per step (default 128)")
    add("--lr", type=float, help="peak learning rate of SGD (default 0.1)")
    add("--momentum", type=float, help="Nesterov momentum (default 0.9)")
    add("--weight-decay", type=float, help="on weights, not biases and BatchNorm (default 5e-4)")
    add("--warmup", type=float, help="share of the steps spent warming up (default 0.1)")
    add("--label-smoothing", type=float, help="of the cross-entropy loss (default 0)")
    add("--valid-fraction", type=float, help="share of DATA/train held out (default 0.1)")
    add("--seed", type=int, help="seeds the split, the weights and the batches (default 0)")
    add("--bfloat16", choices=BFLOAT16_CHOICES,
        help="bfloat16 autocast: on, off (default), or auto (timed on this machine first)")
    add("--channels-last", action="store_true", default=None,
        help="channels-last memory format (often faster on CPUs)")
    add("--resume", action="store_true", help="continue the run saved in --out")
    add("--device", choices=CHOICES, help="where to train (default: $BOOK_DEVICE, else auto)")
    add("--distributed", action="store_true",
        help="train on every process torchrun started (DDP; launch with torchrun)")
    add("--no-progress", action="store_true",
        help="no progress bars (they are shown only when stderr is a terminal anyway)")
    return parser.parse_args(argv)


def say(text: str, writer: bool = True) -> None:
    """Print one line of the run's log (only the writing process prints)."""
    if writer:
        print(text, flush=True)


def given_settings(args: argparse.Namespace) -> dict:
    """The run settings given on the command line (those left unset are absent)."""
    return {key: getattr(args, key) for key in SETTINGS if getattr(args, key) is not None}


def new_run_settings(args: argparse.Namespace) -> dict:
    """The settings of a new run: the defaults, overridden by the command line; checked."""
    settings = SETTINGS | given_settings(args)
    if (args.out / "last.pt").exists():
        raise InputError(f"{args.out} already holds a run (last.pt): pass --resume to continue "
                         "it, or choose another --out.")
    if (not 0 < settings["valid_fraction"] < 1 or min(settings["batch_size"], settings["width"],
                                                       args.epochs) < 1 or settings["lr"] <= 0):
        raise InputError("need --epochs, --batch-size and --width >= 1, --lr > 0 and "
                         "0 < --valid-fraction < 1.")
    try:
        resnet_by_name(settings["model"], settings["width"], 2)
    except ValueError as error:
        raise InputError(f"--model: {error}.") from error
    return settings


def read_run(path: Path) -> dict:
    """The meta of a run's last.pt; InputError if it is missing, unreadable or another model's."""
    if not path.is_file():
        raise InputError(f"nothing to resume: there is no {path}. Run without --resume to start "
                         "a new run there.")
    try:
        meta = check_run_checkpoint(path, read_checkpoint(path))
    except CheckpointError as error:
        raise InputError(str(error)) from error
    if any(key not in meta for key in ("settings", "epoch", "history", "best_valid_acc")):
        raise InputError(f"{path} holds weights but not a resumable run (no settings and "
                         "history): --resume needs the last.pt that torchbook.train writes.")
    return meta


def resumed_settings(args: argparse.Namespace, meta: dict) -> dict:
    """The saved settings of the run to resume; InputError if the command line contradicts them."""
    saved = {key: meta["settings"].get(key, default) for key, default in SETTINGS.items()}
    clashes = {key: value for key, value in given_settings(args).items() if saved[key] != value}
    if clashes:
        key = next(iter(clashes))
        raise InputError(f"the run in {args.out} was trained with --{key.replace('_', '-')} "
                         f"{saved[key]}, not {clashes[key]}: --resume continues a run with its "
                         "own settings. Drop that option, or choose another --out.")
    return saved


def load_data(root: Path, settings: dict) -> TrainData:
    """Read ROOT/train into uint8 tensors and hold out the seeded validation split."""
    if not (Path(root) / "train").is_dir():
        raise InputError(f"there is no folder {Path(root) / 'train'}. --data takes a folder with "
                         "train/ and test/ ImageFolder trees, e.g. data/cifar2 (python -m "
                         "torchbook.data prepares it).")
    images, labels, classes = load_folder(Path(root) / "train")
    n_valid = max(1, round(len(labels) * settings["valid_fraction"]))
    fit, valid = validation_split(len(labels), n_valid, seed=settings["seed"])
    if len(classes) < 2 or len(fit) < settings["batch_size"]:
        raise InputError(f"{root}/train has {len(classes)} classes and {len(fit)} training "
                         f"images after the validation split: need two classes or more, and "
                         f"at least --batch-size ({settings['batch_size']}) images.")
    return TrainData(images[fit], labels[fit], images[valid], labels[valid], classes)


def plain_args(args: argparse.Namespace) -> dict:
    """The parsed command line as plain data (paths as strings), for the checkpoint's meta."""
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()}


def check_resumed_data(out: Path, meta: dict, data: TrainData) -> None:
    """InputError unless the data has the classes the resumed run was trained on."""
    if data.classes != meta["classes"]:
        raise InputError(f"the run in {out} was trained on the classes {meta['classes']}, but "
                         f"--data has {data.classes}: give the run's data, or another --out.")


def check_batch_split(batch_size: int) -> None:
    """InputError unless the batch of a step splits evenly over the processes."""
    if batch_size % world_size():
        raise InputError(f"--batch-size {batch_size} is the batch of one step over all "
                         f"{world_size()} processes: give a multiple of {world_size()}.")


def prepare_run(args: argparse.Namespace) -> tuple[dict, dict, TrainData]:
    """The run's settings, saved meta (empty for a new run) and data, all checked."""
    saved = read_run(args.out / "last.pt") if args.resume else {}
    settings = resumed_settings(args, saved) if args.resume else new_run_settings(args)
    check_batch_split(settings["batch_size"])
    data = load_data(args.data, settings)
    if args.resume:
        check_resumed_data(args.out, saved, data)
    return settings, saved, data


def train(args: argparse.Namespace, writer: bool = True) -> int:
    """Run (or resume) the training that `args` describes; return the exit code."""
    device = process_device() if is_distributed() else pick_device(args.device)
    settings, saved, data = prepare_run(args)
    if saved and saved["epoch"] >= args.epochs:
        say(f"{args.out} has already trained {saved['epoch']} epochs (--epochs {args.epochs}): "
            "nothing to do.", writer)
        return 0
    parameters = count_parameters(resnet_by_name(settings["model"], settings["width"],
                                                 len(data.classes)))
    steps = len(data.fit_labels) // settings["batch_size"]
    say(f"{settings['model']} (width {settings['width']}, {len(data.classes)} classes, "
        f"{parameters:,} parameters) on {len(data.fit_labels):,} images, "
        f"validated on {len(data.valid_labels):,}; {args.epochs} "
        f"epoch{'s' if args.epochs != 1 else ''} of {steps} steps", writer)
    bars_off = True if args.no_progress else None  # tqdm's disable=None: bars on terminals only
    meta = train_run(settings, data, args.out, args.epochs, device,
                     channel_mean_std(data.fit_images), resume=bool(saved), writer=writer,
                     bars_off=bars_off, extra_meta={"args": plain_args(args)})
    say(f"best epoch {meta['best_epoch']}: valid_acc {meta['best_valid_acc']:.4f}; "
        f"{args.out}/best.pt, last.pt and history.csv written", writer)
    return 0


def train_distributed(args: argparse.Namespace) -> int:
    """train() on every process torchrun started: rank 0 alone writes; a restart resumes."""
    init_from_torchrun(args.device)
    try:
        if restarted_by_torchrun() and (args.out / "last.pt").exists():
            args.resume = True  # torchrun restarted the workers: continue the run
        return train(args, writer=is_main_process())
    finally:
        cleanup()


def interrupted_message(out: Path) -> str:
    """Where a run stopped by Ctrl-C can be continued from."""
    last = out / "last.pt"
    try:
        epoch = read_checkpoint(last)["meta"]["epoch"]
    except CheckpointError:
        return "interrupted before the first epoch ended: no checkpoint was written."
    return (f"interrupted: the last complete checkpoint is {last} (epoch {epoch}); continue "
            "with --resume.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train from the command line: 0 when done, 2 for bad input, 130 when interrupted."""
    args = parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt_on_sigterm) if in_main_thread else None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        return train_distributed(args) if args.distributed else train(args)
    except (InputError, CheckpointError, NotLaunchedByTorchrun) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write in {args.out} ({error.strerror}); choose another --out.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args.out), file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
