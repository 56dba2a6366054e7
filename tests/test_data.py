"""Tests for torchbook.data: preparing the CIFAR-10 trees from every kind of source, and bad input.

Most tests build a tiny CIFAR-10 in the official python format (pickled `data_batch_1..5`,
`test_batch`, `batches.meta` in a .tar.gz) or a tiny ImageFolder tree from the committed sample,
and call prepare_data with matching `counts`. Nothing here touches the network.
"""
from __future__ import annotations

import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

from torchbook import data
from torchbook.data import CIFAR10_CLASSES, CIFAR2_CLASSES, DataError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
SMALL = {"train": 15, "test": 3}   # 3 images per class in each of the 5 training batches
NETWORK_REACHABLE = data.network_reachable   # kept before the fixture below replaces it


# --- helpers --------------------------------------------------------------------------------------

def fake_batch(rng: np.random.Generator, per_class: int) -> dict:
    """Return one batch dict in the official format: per_class random images of every class."""
    labels = rng.permutation(np.repeat(np.arange(10), per_class)).tolist()
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return {b"batch_label": b"fake", b"labels": labels, b"data": pixels,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}


def make_archive(path: Path, per_batch: int = 3, test_per_class: int = 3,
                 bytes_names: bool = False, skip: str = "", names: tuple = CIFAR10_CLASSES) -> dict:
    """Write a tiny CIFAR-10 python archive at `path`; return its batch dicts by member name."""
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": fake_batch(rng, per_batch) for i in range(1, 6)}
    batches["test_batch"] = fake_batch(rng, test_per_class)
    label_names = [n.encode() if bytes_names else n for n in names]
    members = {**batches, "batches.meta": {b"label_names": label_names, b"num_vis": 3072}}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            if name != skip:
                payload = pickle.dumps(obj)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return batches


def make_folder(root: Path, per_class: dict[str, int] = {"train": 2, "test": 1},
                classes: tuple = CIFAR10_CLASSES) -> Path:
    """Write a tiny CIFAR-10 ImageFolder tree of real sample JPEGs at `root`; return `root`."""
    for split, n in per_class.items():
        for cls in classes:
            source = SAMPLE / "cifar10" / split / (cls if cls in CIFAR10_CLASSES else "cat")
            (root / split / cls).mkdir(parents=True)
            for f in sorted(source.iterdir())[:n]:
                shutil.copyfile(f, root / split / cls / f.name)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]] | None:
    """Return {relative path: (size, mtime_ns)} of everything under `root` (None if absent)."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def assert_complete(out: Path, counts: dict[str, int]) -> None:
    """Assert both trees under `out` are complete, marked as ours, with no temporary folder left."""
    for name, classes in data.TREES.items():
        assert data.tree_problems(out / name, classes, counts) == []
        assert (out / name / data.MARKER).is_file()
    assert list(out.glob(data.STAGE_PREFIX + "*")) == []


@pytest.fixture(autouse=True)
def no_source_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without CIFAR10_SOURCE (tests that want one set it) and without network."""
    monkeypatch.setenv("CIFAR10_SOURCE_FOR_TESTS", os.environ.get("CIFAR10_SOURCE", ""))
    monkeypatch.delenv("CIFAR10_SOURCE", raising=False)
    monkeypatch.setattr(data, "network_reachable", lambda *args, **kwargs: False)


# --- the official archive -------------------------------------------------------------------------

@pytest.mark.parametrize("per_batch, test_per_class, bytes_names",
                         [(3, 3, False), (1, 2, True)])
def test_archive_is_exported_as_png_trees(tmp_path: Path, per_batch: int, test_per_class: int,
                                          bytes_names: bool) -> None:
    """Every image of the archive lands in its class folder as a PNG with the exact pixels."""
    batches = make_archive(tmp_path / "c10.tar.gz", per_batch, test_per_class, bytes_names)
    counts = {"train": 5 * per_batch, "test": test_per_class}
    out = data.prepare_data(tmp_path / "out", tmp_path / "c10.tar.gz", counts=counts)
    assert out == tmp_path / "out"
    assert_complete(out, counts)
    first = batches["data_batch_1"]
    cls = CIFAR10_CLASSES[first[b"labels"][0]]
    expected = first[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    written = np.asarray(Image.open(out / "cifar10" / "train" / cls / "0000.png"))
    np.testing.assert_array_equal(written, expected)
    test = batches["test_batch"]
    last = CIFAR10_CLASSES[test[b"labels"][-1]]
    expected = test[b"data"][-1].reshape(3, 32, 32).transpose(1, 2, 0)
    last_file = out / "cifar10" / "test" / last / f"{test_per_class - 1:04d}.png"
    written = np.asarray(Image.open(last_file))
    np.testing.assert_array_equal(written, expected)


def test_cifar2_is_airplane_and_automobile(tmp_path: Path) -> None:
    """cifar2 holds byte-identical copies of cifar10's airplane and automobile, labelled 0 and 1."""
    make_archive(tmp_path / "c10.tar.gz")
    out = data.prepare_data(tmp_path / "out", tmp_path / "c10.tar.gz", counts=SMALL)
    for split in data.SPLITS:
        for name, cls in zip(CIFAR2_CLASSES, ("airplane", "automobile")):
            two = sorted((out / "cifar2" / split / name).iterdir())
            ten = sorted((out / "cifar10" / split / cls).iterdir())
            assert [p.name for p in two] == [p.name for p in ten]
            assert all(a.read_bytes() == b.read_bytes() for a, b in zip(two, ten))
    classes = ImageFolder(out / "cifar2" / "train").class_to_idx
    assert classes == {"0_airplane": 0, "1_automobile": 1}
    assert len(ImageFolder(out / "cifar10" / "test")) == 30


def test_download_is_used_without_a_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no source, the official archive is downloaded (MD5 passed on) and not left behind."""
    archive = tmp_path / "served.tar.gz"
    make_archive(archive)
    monkeypatch.setattr(data, "ARCHIVE_SIZE", archive.stat().st_size)
    monkeypatch.setattr(data, "ARCHIVE_MD5", data.file_md5(archive))
    monkeypatch.setattr(data, "network_reachable", lambda *args, **kwargs: True)
    calls = []

    def fake_download_url(url: str, root: str, filename: str, md5: str) -> None:
        calls.append((url, filename, md5))
        shutil.copyfile(archive, Path(root) / filename)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download_url)
    out = data.prepare_data(tmp_path / "out", counts=SMALL)
    assert calls == [(data.ARCHIVE_URL, data.ARCHIVE_NAME, data.file_md5(archive))]
    assert_complete(out, SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["cifar10", "cifar2"]
    assert data.ARCHIVE_URL in (out / "cifar10" / data.MARKER).read_text()


# --- the folder source ----------------------------------------------------------------------------

def test_folder_source_is_copied_unchanged(tmp_path: Path) -> None:
    """A folder source's JPEGs are copied byte for byte with their names (no re-encoding)."""
    source = make_folder(tmp_path / "src")
    out = data.prepare_data(tmp_path / "out", source, counts={"train": 2, "test": 1})
    assert_complete(out, {"train": 2, "test": 1})
    for f in source.rglob("*.jpg"):
        copy = out / "cifar10" / f.relative_to(source)
        assert copy.read_bytes() == f.read_bytes()


def test_source_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR10_SOURCE names the source when no source argument is given."""
    monkeypatch.setenv("CIFAR10_SOURCE", str(make_folder(tmp_path / "src")))
    assert_complete(data.prepare_data(tmp_path / "out", counts={"train": 2, "test": 1}),
                    {"train": 2, "test": 1})


# --- idempotent, atomic, and careful with data it did not write ---------------------------------

def test_second_run_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    """A second run finds complete trees, says the data is ready and writes nothing."""
    make_archive(tmp_path / "c10.tar.gz")
    out = data.prepare_data(tmp_path / "out", tmp_path / "c10.tar.gz", counts=SMALL)
    before = snapshot(out)
    monkeypatch.setattr(data, "staging_folder", None)   # any attempt to build would fail
    capsys.readouterr()
    data.prepare_data(out, tmp_path / "c10.tar.gz", counts=SMALL)
    assert "ready" in capsys.readouterr().out
    assert snapshot(out) == before


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("out_exists", [False, True])
def test_failure_midway_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        error: BaseException, out_exists: bool) -> None:
    """A run that fails or is interrupted half-way leaves `out` exactly as it was."""
    make_archive(tmp_path / "c10.tar.gz")
    out = tmp_path / "out"
    if out_exists:
        (out / "notes").mkdir(parents=True)
        (out / "notes" / "mine.txt").write_text("keep me")
    before, written = snapshot(out), []

    def failing_write_png(pixels: np.ndarray, path: Path) -> None:
        written.append(path)
        if len(written) == 40:
            raise error

    monkeypatch.setattr(data, "write_png", failing_write_png)
    with pytest.raises(type(error)):
        data.prepare_data(out, tmp_path / "c10.tar.gz", counts=SMALL)
    assert len(written) == 40
    assert snapshot(out) == before


def test_stale_temporary_folder_of_a_killed_run_is_removed(tmp_path: Path) -> None:
    """A temporary folder left by a killed run (its process is gone) is cleaned up next time."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / "out" / f"{data.STAGE_PREFIX}{dead}-abc"
    (stale / "cifar10" / "train").mkdir(parents=True)
    make_archive(tmp_path / "c10.tar.gz")
    assert_complete(data.prepare_data(tmp_path / "out", tmp_path / "c10.tar.gz", counts=SMALL),
                    SMALL)


def test_complete_tree_not_ours_is_kept(tmp_path: Path) -> None:
    """A complete cifar2 copied by hand is used as it is; only the missing cifar10 is written."""
    make_archive(tmp_path / "c10.tar.gz")
    out = tmp_path / "out"
    by_hand = make_folder(out / "cifar2", {"train": 15, "test": 3}, CIFAR2_CLASSES)
    before = snapshot(by_hand)
    data.prepare_data(out, tmp_path / "c10.tar.gz", counts=SMALL)
    assert snapshot(by_hand) == before
    assert not (by_hand / data.MARKER).exists()
    assert data.tree_problems(out / "cifar10", CIFAR10_CLASSES, SMALL) == []


def test_incomplete_tree_not_ours_is_refused(tmp_path: Path) -> None:
    """An incomplete tree prepare_data did not write stops the run, untouched, with advice."""
    make_archive(tmp_path / "c10.tar.gz")
    out = tmp_path / "out"
    make_folder(out / "cifar10", {"train": 15, "test": 3}, CIFAR10_CLASSES[:9])
    before = snapshot(out)
    with pytest.raises(DataError, match="not written by torchbook") as err:
        data.prepare_data(out, tmp_path / "c10.tar.gz", counts=SMALL)
    assert str(out / "cifar10") in str(err.value) and "missing classes: truck" in str(err.value)
    assert snapshot(out) == before


def test_incomplete_tree_of_ours_is_rebuilt(tmp_path: Path) -> None:
    """A tree prepare_data wrote that has since lost a file is rebuilt on the next run."""
    make_archive(tmp_path / "c10.tar.gz")
    out = data.prepare_data(tmp_path / "out", tmp_path / "c10.tar.gz", counts=SMALL)
    (out / "cifar2" / "train" / "0_airplane" / "0003.png").unlink()
    data.prepare_data(out, tmp_path / "c10.tar.gz", counts=SMALL)
    assert_complete(out, SMALL)


# --- bad input: a clear message, and nothing changed --------------------------------------------

def test_no_source_and_no_network(tmp_path: Path) -> None:
    """Offline without a source: a quick error saying how to set CIFAR10_SOURCE; nothing written."""
    start = time.perf_counter()
    with pytest.raises(DataError, match="CIFAR10_SOURCE") as err:
        data.prepare_data(tmp_path / "out", counts=SMALL)
    assert time.perf_counter() - start < 5
    assert "cannot be reached" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_network_reachable_is_quick_and_right() -> None:
    """The reachability check sees a listening local port and gives up quickly on a closed one."""
    fresh = NETWORK_REACHABLE
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert fresh("127.0.0.1", port, timeout=2.0)
    start = time.perf_counter()
    assert not fresh("127.0.0.1", port, timeout=2.0)
    assert time.perf_counter() - start < 2.5


def corrupt_archives(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Return bad archives by case: (path, text the error message must contain)."""
    good = tmp_path / "good.tar.gz"
    make_archive(good)
    raw = good.read_bytes()
    cases = {"random bytes": (b"\x8b" * 5000, "corrupt or truncated"),
             "truncated gzip": (raw[: len(raw) // 2], "corrupt or truncated")}
    paths = {}
    for case, (payload, text) in cases.items():
        paths[case] = (tmp_path / f"{case.replace(' ', '_')}.tar.gz", text)
        paths[case][0].write_bytes(payload)
    make_archive(tmp_path / "no_batch3.tar.gz", skip="data_batch_3")
    paths["missing batch"] = (tmp_path / "no_batch3.tar.gz", "data_batch_3")
    make_archive(tmp_path / "cifar100ish.tar.gz", names=tuple(f"c{i}" for i in range(10)))
    paths["wrong label names"] = (tmp_path / "cifar100ish.tar.gz", "label names")
    return paths


@pytest.mark.parametrize("case", ["random bytes", "truncated gzip", "missing batch",
                                  "wrong label names"])
def test_corrupt_archive(tmp_path: Path, case: str) -> None:
    """A corrupt, truncated or wrong archive is named in a clear error; nothing is written."""
    path, text = corrupt_archives(tmp_path)[case]
    with pytest.raises(DataError) as err:
        data.prepare_data(tmp_path / "out", path, counts=SMALL)
    assert str(path) in str(err.value) and text in str(err.value)
    assert "Nothing was changed" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_official_archive_is_checksummed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file named like the official archive must have its size and MD5, else a clear error."""
    official = tmp_path / data.ARCHIVE_NAME
    make_archive(official)
    with pytest.raises(DataError, match="truncated or not the official file"):
        data.prepare_data(tmp_path / "out", official, counts=SMALL)
    monkeypatch.setattr(data, "ARCHIVE_SIZE", official.stat().st_size)
    with pytest.raises(DataError, match="fails the MD5 checksum"):
        data.prepare_data(tmp_path / "out", official, counts=SMALL)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(data, "ARCHIVE_MD5", data.file_md5(official))
    assert_complete(data.prepare_data(tmp_path / "out", official, counts=SMALL), SMALL)


def test_archive_with_code_in_a_pickle_is_refused(tmp_path: Path) -> None:
    """Batches are unpickled with an allow-list: an object that would run code is refused."""
    path = tmp_path / "evil.tar.gz"
    payload = pickle.dumps({b"data": os.system})
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="unexpected object"):
        data.prepare_data(tmp_path / "out", path, counts=SMALL)


def test_wrong_counts_are_reported(tmp_path: Path) -> None:
    """A source with other counts per class than expected fails the count check, naming a class."""
    make_archive(tmp_path / "c10.tar.gz", per_batch=2)
    with pytest.raises(DataError, match=r"train/airplane has 10 images, expected 15"):
        data.prepare_data(tmp_path / "out", tmp_path / "c10.tar.gz", counts=SMALL)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("classes, text", [
    (CIFAR10_CLASSES[:8], "missing classes: ship, truck"),
    ((*CIFAR10_CLASSES, "unicorn"), "extra folders: unicorn"),
])
def test_folder_with_missing_or_extra_classes(tmp_path: Path, classes: tuple, text: str) -> None:
    """A folder source without every class, or with more, is refused naming those classes."""
    source = make_folder(tmp_path / "src", classes=classes)
    with pytest.raises(DataError, match=text):
        data.prepare_data(tmp_path / "out", source, counts={"train": 2, "test": 1})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, text", [
    (lambda jpeg: jpeg[: len(jpeg) // 2], "does not decode"),
    (lambda jpeg: b"not an image at all", "does not decode"),
    (lambda jpeg: _png_bytes(64), "64x64 pixels"),
])
def test_folder_with_a_bad_image(tmp_path: Path, content, text: str) -> None:
    """An image that does not decode (or is not 32x32) is named by its path; nothing is written."""
    source = make_folder(tmp_path / "src")
    bad = source / "test" / "frog" / sorted(os.listdir(source / "test" / "frog"))[0]
    bad.write_bytes(content(bad.read_bytes()))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=text) as err:
        data.prepare_data(out, source, counts={"train": 2, "test": 1})
    assert str(bad) in str(err.value)
    assert list(out.iterdir()) == []


def _png_bytes(side: int) -> bytes:
    """Return a valid grey PNG of side x side pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_missing_source_path(tmp_path: Path) -> None:
    """A source that does not exist is reported with how to set CIFAR10_SOURCE."""
    with pytest.raises(DataError, match="does not exist") as err:
        data.prepare_data(tmp_path / "out", tmp_path / "nowhere", counts=SMALL)
    assert "CIFAR10_SOURCE" in str(err.value)


# --- the sample, and the folders chapters ask for -----------------------------------------------

def test_make_sample_takes_the_first_files_by_name(tmp_path: Path) -> None:
    """make_sample copies the first images of each class in sorted file-name order."""
    source = make_folder(tmp_path / "src", {"train": 4, "test": 3})
    (source / "train" / "cat" / "zzz.txt").write_text("not an image")
    sample = data.make_sample(source, tmp_path / "sample", counts={"train": 2, "test": 1})
    for split, n in (("train", 2), ("test", 1)):
        for cls in CIFAR10_CLASSES:
            expected = sorted(os.listdir(source / split / cls))[:n]
            assert sorted(os.listdir(sample / "cifar10" / split / cls)) == expected
    assert_complete(sample, {"train": 2, "test": 1})


def full_cifar10_folder() -> Path | None:
    """Return a full CIFAR-10 ImageFolder tree on this machine, if there is one."""
    for candidate in (os.environ.get("CIFAR10_SOURCE_FOR_TESTS", ""), ROOT / "data" / "cifar10"):
        if candidate and (Path(candidate) / "train").is_dir():
            return Path(candidate)
    return None


@pytest.mark.skipif(full_cifar10_folder() is None,
                    reason="needs the full CIFAR-10 as a folder (CIFAR10_SOURCE or data/cifar10)")
def test_make_sample_reproduces_the_committed_sample(tmp_path: Path) -> None:
    """The selection rule, run on the full data, gives exactly the committed data/sample files."""
    made = data.make_sample(full_cifar10_folder(), tmp_path / "sample")
    for name in data.TREES:
        files = sorted(p.relative_to(SAMPLE / name) for p in (SAMPLE / name).rglob("*.jpg"))
        assert sorted(p.relative_to(made / name) for p in (made / name).rglob("*.jpg")) == files
        assert all((made / name / f).read_bytes() == (SAMPLE / name / f).read_bytes()
                   for f in files)


def test_folders_in_fast_mode_are_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """In fast mode cifar2_folder and cifar10_folder return the committed sample's folders."""
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.delenv("BOOK_DATA_DIR", raising=False)
    assert data.cifar2_folder("train") == SAMPLE / "cifar2" / "train"
    assert data.cifar10_folder("test") == SAMPLE / "cifar10" / "test"
    assert len(ImageFolder(data.cifar2_folder("test"))) == 40
    with pytest.raises(ValueError, match="split"):
        data.cifar2_folder("valid")


def test_full_mode_prepares_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside fast mode cifar2_folder prepares the full data when it is missing, then reuses it."""
    make_archive(tmp_path / "c10.tar.gz")
    monkeypatch.delenv("BOOK_FAST", raising=False)
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CIFAR10_SOURCE", str(tmp_path / "c10.tar.gz"))
    monkeypatch.setattr(data, "FULL_COUNTS", SMALL)
    assert data.cifar2_folder("train") == tmp_path / "data" / "cifar2" / "train"
    assert_complete(tmp_path / "data", SMALL)
    monkeypatch.setattr(data, "prepare_data", None)   # a complete tree needs no preparation
    assert data.cifar10_folder("test") == tmp_path / "data" / "cifar10" / "test"


def test_fast_mode_without_the_sample_cuts_it(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a committed sample (a pip install), fast mode makes it from the full data."""
    make_archive(tmp_path / "c10.tar.gz")
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CIFAR10_SOURCE", str(tmp_path / "c10.tar.gz"))
    monkeypatch.setattr(data, "FULL_COUNTS", SMALL)
    monkeypatch.setattr(data, "SAMPLE_COUNTS", {"train": 4, "test": 2})
    assert data.cifar2_folder("test") == tmp_path / "data" / "sample" / "cifar2" / "test"
    assert_complete(tmp_path / "data" / "sample", {"train": 4, "test": 2})
    assert sorted(os.listdir(tmp_path / "data" / "sample" / "cifar10" / "test" / "dog")) == \
        ["0000.png", "0001.png"]


# --- the command line ---------------------------------------------------------------------------

def test_cli_prepares_and_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    """`python -m torchbook.data --source ... --out ...` writes the trees and exits 0."""
    make_archive(tmp_path / "c10.tar.gz")
    monkeypatch.setattr(data, "FULL_COUNTS", SMALL)
    args = ["--source", str(tmp_path / "c10.tar.gz"), "--out", str(tmp_path / "out")]
    assert data.main(args) == 0
    assert "Done" in capsys.readouterr().out
    assert data.main(args) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_cli_reports_bad_input_without_traceback(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """Bad input: exit code 1 and a one-line error on stderr, no traceback."""
    assert data.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_prepare_data_script_exit_code(tmp_path: Path) -> None:
    """data_scripts/prepare_data.py is the same command: a bad source exits 1, no traceback."""
    env = {**os.environ, "CIFAR10_SOURCE": str(tmp_path / "nowhere")}
    proc = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "prepare_data.py"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.environ.get("CIFAR10_SOURCE"),
                    reason="set CIFAR10_SOURCE to a full CIFAR-10 copy to run the integration test")
def test_full_preparation_from_cifar10_source(tmp_path: Path) -> None:
    """Integration: the full CIFAR-10 from $CIFAR10_SOURCE gives 5000 / 1000 images per class."""
    source = os.environ["CIFAR10_SOURCE_FOR_TESTS"]
    out = data.prepare_data(tmp_path / "out", source)
    assert_complete(out, data.FULL_COUNTS)
    assert len(ImageFolder(out / "cifar2" / "test")) == 2000


def test_covid19_csv_prefers_the_data_folder_and_falls_back_to_the_package(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """covid19_csv() gives data/covid-19.csv, or the packaged copy when the data folder lacks it."""
    from torchbook.data import covid19_csv

    local = covid19_csv()
    assert local.parent.name == "data"
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    packaged = covid19_csv()
    assert packaged.parent.name == "resources" and packaged.is_file()
    assert packaged.read_bytes() == local.read_bytes()
