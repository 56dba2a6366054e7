"""CIFAR-10 on disk: prepare the book's ImageFolder trees and find them.

`python -m torchbook.data [--source PATH] [--out DIR]` (or `python data_scripts/prepare_data.py`)
writes two ImageFolder trees under DIR (default: the checkout's `data/`, see `settings.data_dir`):

    DIR/cifar10/{train,test}/<class>/<n>.<ext>             10 classes, 5000 / 1000 images each
    DIR/cifar2/{train,test}/{0_airplane,1_automobile}/...  the airplane and automobile classes

The source is `--source` or `$CIFAR10_SOURCE`: a CIFAR-10 ImageFolder tree (its files are copied
as they are, after checking that each one decodes) or the official `cifar-10-python.tar.gz`
(MD5-checked, its images written as PNG). With neither, the official archive is downloaded.
Trees are built in a temporary folder inside DIR and renamed into place at the end, so a failed or
interrupted run changes nothing; complete trees are left alone, and trees this module did not write
(no `.torchbook-prepared.json` marker in them) are never deleted.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.resources
import io
import json
import os
import pickle
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Optional, Union

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm.auto import tqdm

from torchbook.settings import data_dir, fast_mode, sample_dir

PathLike = Union[str, Path]
Counts = Mapping[str, int]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR2_CLASSES = ("0_airplane", "1_automobile")
CIFAR2_FROM_CIFAR10 = {"0_airplane": "airplane", "1_automobile": "automobile"}
TREES = {"cifar10": CIFAR10_CLASSES, "cifar2": CIFAR2_CLASSES}
SPLITS = ("train", "test")
FULL_COUNTS = {"train": 5000, "test": 1000}   # images per class in the full CIFAR-10
SAMPLE_COUNTS = {"train": 100, "test": 20}    # images per class in the committed sample

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_SIZE = 170_498_071
ARCHIVE_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
ARCHIVE_META = "batches.meta"
CONNECT_TIMEOUT_S = 10.0   # the reachability check before a download (DNS included)
DOWNLOAD_STALL_S = 20.0    # a download that receives nothing for this long fails

MARKER = ".torchbook-prepared.json"
STAGE_PREFIX = ".tmp-prepare-"
HOW_TO_SET_SOURCE = (
    "Point torchbook at a local copy of CIFAR-10 instead: set CIFAR10_SOURCE to an ImageFolder "
    "tree ({train,test}/<class>/*.jpg) or to the official cifar-10-python.tar.gz, e.g. "
    "`CIFAR10_SOURCE=/path/to/cifar10 python data_scripts/prepare_data.py` (or pass --source PATH)."
)


class DataError(Exception):
    """The data cannot be prepared or found; the message says why and what to do."""


def covid19_csv() -> Path:
    """Return the covid-19.csv time series: data/covid-19.csv, else the copy shipped in torchbook."""
    local = data_dir() / "covid-19.csv"
    if local.is_file():
        return local
    return Path(str(importlib.resources.files("torchbook") / "resources" / "covid-19.csv"))


def say(message: str) -> None:
    """Print a progress message for the person running the preparation."""
    print(message, flush=True)


# --- what is on disk ------------------------------------------------------------------------------

def image_files(folder: Path) -> list[Path]:
    """Return the image files in `folder` that ImageFolder would load, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))


def count_images(folder: Path) -> int:
    """Return how many image files ImageFolder would load from `folder`."""
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.lower().endswith(IMG_EXTENSIONS) and e.is_file())


def class_mismatch(split_dir: Path, classes: Sequence[str]) -> str:
    """Describe the missing and extra class folders of `split_dir` ('' when they match)."""
    with os.scandir(split_dir) as entries:
        found = {e.name for e in entries if e.is_dir()}
    missing = [c for c in classes if c not in found]
    extra = sorted(found - set(classes))
    return "; ".join(([f"missing classes: {', '.join(missing)}"] if missing else [])
                     + ([f"extra folders: {', '.join(extra)}"] if extra else []))


def tree_problems(root: Path, classes: Sequence[str], counts: Optional[Counts]) -> list[str]:
    """List what keeps `root` from being a complete ImageFolder tree (counts None: classes only)."""
    if not root.is_dir():
        return [f"{root} is missing"]
    problems = []
    for split in SPLITS:
        if not (root / split).is_dir():
            problems.append(f"{split}/ is missing")
            continue
        mismatch = class_mismatch(root / split, classes)
        problems += [f"{split}/: {mismatch}"] if mismatch else []
        for cls in classes if counts else []:
            folder = root / split / cls
            if folder.is_dir() and (found := count_images(folder)) != counts[split]:
                problems.append(f"{split}/{cls} has {found} images, expected {counts[split]}")
    return problems


def summarize(problems: list[str], limit: int = 4) -> str:
    """Join the first few problems into one line."""
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def written_by_us(root: Path) -> bool:
    """Return True if `root` carries the marker that prepare_data / make_sample wrote it."""
    return (root / MARKER).is_file()


def trees_to_build(out: Path, counts: Counts, names: Sequence[str] = tuple(TREES)) -> list[str]:
    """Return the trees under `out` that need building; DataError for a broken tree not ours."""
    todo = []
    for name in names:
        root = out / name
        problems = tree_problems(root, TREES[name], counts)
        if problems and (root.exists() or root.is_symlink()) and not written_by_us(root):
            raise DataError(
                f"{root} exists but is not a complete {name} tree ({summarize(problems)}). It was "
                f"not written by torchbook, so it is left alone: move or delete it yourself, "
                f"then run the preparation again.")
        todo += [name] if problems else []
    return todo


# --- building trees atomically --------------------------------------------------------------------

def process_alive(pid: int) -> bool:
    """Return True if process `pid` still runs (always True where we cannot tell)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_stages(out: Path) -> None:
    """Delete temporary folders in `out` left behind by earlier runs that were killed."""
    for stage in out.glob(STAGE_PREFIX + "*"):
        pid = stage.name[len(STAGE_PREFIX):].split("-", 1)[0]
        if stage.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder in `out`; remove it after (and `out` if made here, on failure)."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=out))
    succeeded = False
    try:
        yield stage
        succeeded = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created if not succeeded else []:
            with contextlib.suppress(OSError):
                folder.rmdir()


def install_tree(new: Path, target: Path, stage: Path) -> None:
    """Rename the finished tree `new` to `target`, first moving an old tree of ours into `stage`."""
    if target.exists() or target.is_symlink():
        target.rename(stage / f"old-{target.name}")
    new.rename(target)


def write_marker(root: Path, origin: str, counts: Counts) -> None:
    """Record in `root` that torchbook wrote this tree, from what, and with how many images."""
    info = {"written_by": "torchbook.data", "origin": origin, "classes": list(TREES[root.name]),
            "images_per_class": dict(counts),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (root / MARKER).write_text(json.dumps(info, indent=2) + "\n")


def check_written_tree(root: Path, counts: Counts) -> None:
    """Raise DataError unless the freshly written tree `root` has every class with its count."""
    problems = tree_problems(root, TREES[root.name], counts)
    if problems:
        raise DataError(
            f"the {root.name} tree written from the source is incomplete ({summarize(problems)}): "
            f"the source does not hold exactly {counts['train']} training and {counts['test']} "
            f"test images of each class. Nothing was changed.")


def build_trees(out: Path, counts: Counts, write_cifar10: Callable[[Path], str], what: str) -> Path:
    """Build the missing cifar10/cifar2 trees in `out` atomically (write_cifar10: the origin)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file, not a folder: choose another --out.")
    todo = trees_to_build(out, counts)
    if not todo:
        say(f"{what[:1].upper() + what[1:]} is ready in {out} (cifar10 and cifar2 are complete): "
            "nothing to do.")
        return out
    say(f"Preparing {what}: {' and '.join(todo)} in {out}")
    with staging_folder(out) as stage:
        origin, cifar10_root = f"{out / 'cifar10'}", out / "cifar10"
        if "cifar10" in todo:
            origin, cifar10_root = write_cifar10(stage / "cifar10"), stage / "cifar10"
        if "cifar2" in todo:
            write_cifar2(cifar10_root, stage / "cifar2")
        for name in todo:
            check_written_tree(stage / name, counts)
            write_marker(stage / name, origin, counts)
        for name in todo:
            install_tree(stage / name, out / name, stage)
    say(f"Done: {' and '.join(todo)} written to {out} ({counts['train']} training and "
        f"{counts['test']} test images per class).")
    return out


# --- copying image files --------------------------------------------------------------------------

def check_image(data: bytes, path: Path) -> None:
    """Raise DataError naming `path` unless `data` decodes to a 32x32 image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            size = image.size
    except Exception as err:  # PIL raises many exception types for broken files
        raise DataError(f"{path} does not decode as an image ({err}). Replace it with a good "
                        f"copy in the source, then run again. Nothing was changed.") from err
    if size != (32, 32):
        raise DataError(f"{path} is {size[0]}x{size[1]} pixels, but CIFAR-10 images are 32x32: "
                        f"is the source really CIFAR-10? Nothing was changed.")


def copy_images(pairs: Sequence[tuple[Path, Path]], desc: str) -> None:
    """Copy each (source, destination) file byte for byte, after checking the source decodes."""
    for folder in sorted({dest.parent for _, dest in pairs}):
        folder.mkdir(parents=True, exist_ok=True)
    for src, dest in tqdm(pairs, desc=desc, unit="img", disable=None, mininterval=1.0):
        data = src.read_bytes()
        check_image(data, src)
        dest.write_bytes(data)


def folder_images(root: Path, counts: Counts, first_only: bool) -> list[tuple[Path, str]]:
    """Return (file, 'split/class') for a CIFAR-10 tree: all, or the first `counts` per class."""
    problems = tree_problems(root, CIFAR10_CLASSES, None if first_only else counts)
    if problems:
        raise DataError(f"{root} is not a complete CIFAR-10 ImageFolder tree "
                        f"({summarize(problems)}); expected {{train,test}}/<class>/ folders for "
                        f"exactly the 10 classes {', '.join(CIFAR10_CLASSES)}. "
                        f"Nothing was changed.")
    pairs = []
    for split in SPLITS:
        for cls in CIFAR10_CLASSES:
            files = image_files(root / split / cls)
            if len(files) < counts[split]:
                raise DataError(f"{root / split / cls} has {len(files)} images, expected at "
                                f"least {counts[split]}. Nothing was changed.")
            pairs += [(f, f"{split}/{cls}") for f in files[:counts[split]]]
    return pairs


def copy_cifar10_folder(root: Path, dest: Path, counts: Counts, first_only: bool = False) -> None:
    """Copy a CIFAR-10 ImageFolder tree (or its first images per class) to `dest`, names kept."""
    pairs = [(f, dest / rel / f.name) for f, rel in folder_images(root, counts, first_only)]
    copy_images(pairs, desc="cifar10")


def write_cifar2(cifar10_root: Path, dest: Path) -> None:
    """Write the cifar2 tree (airplane as 0_airplane, automobile as 1_automobile) from cifar10."""
    pairs = [(f, dest / split / name / f.name) for split in SPLITS
             for name, cls in CIFAR2_FROM_CIFAR10.items()
             for f in image_files(cifar10_root / split / cls)]
    copy_images(pairs, desc="cifar2")


# --- the official archive -------------------------------------------------------------------------

class BatchUnpickler(pickle.Unpickler):
    """Unpickle CIFAR-10 batches: plain data and NumPy arrays only, never arbitrary objects."""

    MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
               "numpy.core.numeric", "numpy._core.numeric"}
    NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> object:
        """Allow only NumPy's array-rebuilding functions (numpy.core names read as numpy._core)."""
        if module not in self.MODULES or name not in self.NAMES:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        try:
            return super().find_class(module.replace("numpy.core", "numpy._core"), name)
        except (ImportError, AttributeError):
            return super().find_class(module, name)


def file_md5(path: Path) -> str:
    """Return the MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_archive_checksum(path: Path) -> None:
    """If `path` is named like the official archive, check its size and MD5 (DataError if not)."""
    if path.name != ARCHIVE_NAME:
        return
    again = (f"Delete it and download it again from {ARCHIVE_URL}, or set CIFAR10_SOURCE to "
             f"another copy. Nothing was changed.")
    size = path.stat().st_size
    if size != ARCHIVE_SIZE:
        raise DataError(f"{path} has {size:,} bytes but the official {ARCHIVE_NAME} has "
                        f"{ARCHIVE_SIZE:,}: it is truncated or not the official file. {again}")
    if file_md5(path) != ARCHIVE_MD5:
        raise DataError(f"{path} fails the MD5 checksum ({ARCHIVE_MD5} expected): "
                        f"it is corrupt. {again}")


def with_str_keys(batch: dict) -> dict:
    """Return the batch dict with bytes keys decoded (Python 3 pickles use b'data')."""
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}


def read_archive(path: Path) -> dict[str, dict]:
    """Unpickle batches.meta and every data batch of the archive in one pass over the tar."""
    wanted = {ARCHIVE_META, *ARCHIVE_BATCHES["train"], *ARCHIVE_BATCHES["test"]}
    found = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name).name
            if member.isfile() and name in wanted:
                found[name] = with_str_keys(BatchUnpickler(tar.extractfile(member),
                                                           encoding="latin1").load())
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValueError(f"the archive lacks {', '.join(missing)}")
    return found


def batch_arrays(batch: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return a batch's images as N x 32 x 32 x 3 uint8 and its labels, after checking both."""
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{name}: data is {data.dtype} {data.shape}, expected uint8 N x 3072")
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"{name}: labels must be {len(data)} class numbers 0-9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and check the official CIFAR-10 python archive; DataError if it is corrupt."""
    check_archive_checksum(path)
    try:
        batches = read_archive(path)
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in batches[ARCHIVE_META]["label_names"]]
        if tuple(names) != CIFAR10_CLASSES:
            raise ValueError(f"its label names are {names}, not CIFAR-10's")
        return {name: batch_arrays(batches[name], name) for name in batches if name != ARCHIVE_META}
    except Exception as err:  # tar, gzip, zlib, pickle and content errors all mean a bad archive
        raise DataError(
            f"{path} is not a readable CIFAR-10 python archive ({type(err).__name__}: {err}): it "
            f"is corrupt or truncated. Download it again from {ARCHIVE_URL}, or set CIFAR10_SOURCE "
            f"to an ImageFolder copy. Nothing was changed.") from err


def write_png(pixels: np.ndarray, path: Path) -> None:
    """Save one 32 x 32 x 3 uint8 image as a PNG file."""
    Image.fromarray(pixels).save(path, format="PNG")


def export_archive(path: Path, dest: Path) -> None:
    """Write the images of the official CIFAR-10 archive as PNGs: dest/split/class/NNNN.png."""
    batches = load_archive(path)
    for split, names in ARCHIVE_BATCHES.items():
        for cls in CIFAR10_CLASSES:
            (dest / split / cls).mkdir(parents=True, exist_ok=True)
        seen = dict.fromkeys(CIFAR10_CLASSES, 0)
        for name in names:
            images, labels = batches.pop(name)
            for pixels, label in tqdm(zip(images, labels), total=len(labels), desc=name,
                                      unit="img", disable=None, mininterval=1.0):
                cls = CIFAR10_CLASSES[label]
                write_png(pixels, dest / split / cls / f"{seen[cls]:04d}.png")
                seen[cls] += 1


# --- the download ---------------------------------------------------------------------------------

def network_reachable(host: str, port: int = 443, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Return True if a TCP connection to host:port opens within `timeout` seconds, DNS included."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def download_archive(folder: Path) -> Path:
    """Download the official archive into `folder` (progress bar, MD5 check); DataError offline."""
    host = urllib.parse.urlsplit(ARCHIVE_URL).hostname or ""
    if not network_reachable(host):
        raise DataError(f"No CIFAR-10 source was given and {host} cannot be reached (no network?), "
                        f"so CIFAR-10 cannot be downloaded. Nothing was changed. "
                        f"{HOW_TO_SET_SOURCE}")
    from torchvision.datasets.utils import download_url

    say(f"Downloading {ARCHIVE_URL} (about 170 MB)")
    folder.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_STALL_S)
    try:
        download_url(ARCHIVE_URL, str(folder), ARCHIVE_NAME, ARCHIVE_MD5)
    except Exception as err:  # URLError, timeouts, checksum RuntimeError
        raise DataError(f"Downloading {ARCHIVE_URL} failed ({err}). {HOW_TO_SET_SOURCE}") from err
    finally:
        socket.setdefaulttimeout(previous)
    return folder / ARCHIVE_NAME


# --- the public API -------------------------------------------------------------------------------

def source_path(source: Optional[PathLike]) -> Optional[Path]:
    """Return the CIFAR-10 source: `source`, else $CIFAR10_SOURCE, else None (download)."""
    raw = str(source) if source not in (None, "") else os.environ.get("CIFAR10_SOURCE", "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.exists():
        raise DataError(f"The CIFAR-10 source {path} (from --source or CIFAR10_SOURCE) does not "
                        f"exist. {HOW_TO_SET_SOURCE}")
    if path.is_dir() and not (path / "train").is_dir() and (path / ARCHIVE_NAME).is_file():
        return path / ARCHIVE_NAME
    return path


def write_cifar10(source: Optional[PathLike], dest: Path, counts: Counts) -> str:
    """Write the CIFAR-10 tree `dest` from the source or the download; return where it came from."""
    path = source_path(source)
    if path is None:
        path = download_archive(dest.parent / "download")
    if path.is_dir():
        copy_cifar10_folder(path, dest, counts)
    else:
        export_archive(path, dest)
    return ARCHIVE_URL if path.parent == dest.parent / "download" else str(path)


def prepare_data(out: Optional[PathLike] = None, source: Optional[PathLike] = None,
                 counts: Optional[Counts] = None) -> Path:
    """Write complete cifar10 and cifar2 ImageFolder trees in `out` (default data_dir()); return it.

    `source` (else $CIFAR10_SOURCE, else the official download) is a CIFAR-10 ImageFolder tree or
    the official archive. `counts` is the number of images per class in each split that the source
    must hold, the full CIFAR-10's {'train': 5000, 'test': 1000} unless given (tests use less).
    Raises DataError, with what to do, when the data cannot be prepared.
    """
    counts = dict(counts or FULL_COUNTS)
    out = Path(out).expanduser().resolve() if out is not None else data_dir()
    return build_trees(out, counts, lambda dest: write_cifar10(source, dest, counts), "CIFAR-10")


def make_sample(full_root: PathLike, out_root: PathLike, counts: Optional[Counts] = None) -> Path:
    """Write the sample of a CIFAR-10 tree (the first files per class, by name) in `out_root`.

    Like the committed `data/sample`: `out_root/cifar10` and `out_root/cifar2`, each with the first
    `counts` ({'train': 100, 'test': 20} unless given) images of each class in sorted file order.
    """
    counts, full_root = dict(counts or SAMPLE_COUNTS), Path(full_root)

    def write_first_images(dest: Path) -> str:
        copy_cifar10_folder(full_root, dest, counts, first_only=True)
        return f"first images per class of {full_root}"

    return build_trees(Path(out_root), counts, write_first_images, "the CIFAR-10 sample")


def ensure_full_data(name: str) -> Path:
    """Return data_dir() once its `name` tree is complete, preparing the full data if needed."""
    out = data_dir()
    if trees_to_build(out, FULL_COUNTS, [name]):
        prepare_data(out)
    return out


def ensure_sample(name: str) -> Path:
    """Return sample_dir() once its `name` tree is complete, cut from the full data if need be."""
    sample = sample_dir()
    if trees_to_build(sample, SAMPLE_COUNTS, [name]):
        make_sample(ensure_full_data("cifar10") / "cifar10", sample)
    return sample


def dataset_folder(name: str, split: str) -> Path:
    """Return the `split` folder of tree `name`: the sample in fast mode, else the full data."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    root = ensure_sample(name) if fast_mode() else ensure_full_data(name)
    return root / name / split


def cifar2_folder(split: str) -> Path:
    """Return the cifar2 ImageFolder folder of `split` ('train' or 'test'), prepared if need be."""
    return dataset_folder("cifar2", split)


def cifar10_folder(split: str) -> Path:
    """Return the cifar10 ImageFolder folder of `split` ('train' or 'test'), prepared if need be."""
    return dataset_folder("cifar10", split)


# --- command line ---------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse the command line of `python -m torchbook.data`."""
    parser = argparse.ArgumentParser(
        prog="python -m torchbook.data",
        description="Write the cifar10 and cifar2 ImageFolder trees the book uses.",
        epilog="Without --source, $CIFAR10_SOURCE is used; without either, the official archive "
               "is downloaded (MD5-checked).")
    parser.add_argument("--source", help="a CIFAR-10 ImageFolder tree or cifar-10-python.tar.gz")
    parser.add_argument("--out", help="the folder that receives cifar10/ and cifar2/ "
                                      "(default: the checkout's data/ or $BOOK_DATA_DIR)")
    return parser.parse_args(argv)


def interrupt_on_sigterm(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C (KeyboardInterrupt): a command stops and cleans up the same way."""
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prepare the data from the command line; print errors without traceback; return exit code."""
    args = parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt_on_sigterm) if in_main_thread else None
    try:
        prepare_data(args.out, args.source)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was changed", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
