"""The grader (tools/grade.py, `make grade`): the gradebook of good and bad submissions.

One chapter (02, fast mode) is graded as handed in by eight students: correct (the chapter with its
solutions), blank (the student edition, unanswered), wrong (a solution altered), crashing (a cell
raises), corrupt (not JSON), empty, and, in a second run with a short time limit, hanging
(`while True: pass`) and one that writes into its student's folder. Both runs go at the same time
to keep the test near two minutes.
"""
from __future__ import annotations

import csv
import time
import types
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from otter.test_files import ExceptionTestFile
from torch import nn

from torchbook.checkpoints import restore_rng_states, rng_states
from torchbook.datasets import WindowDataset
from torchbook.training import Callback

from scripts import import_script

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STEM = "02_models_three_ways"
grade = import_script("tools", "grade")
make_student = import_script("tools", "make_student")

def chapter() -> nbformat.NotebookNode:
    """The chapter notebook, as stored."""
    return nbformat.read(ROOT / "notebooks" / f"{STEM}.ipynb", as_version=4)


def edit_cell(nb: nbformat.NotebookNode, marker: str, old: str, new: str) -> None:
    """Replace `old` by `new` in the one code cell whose source contains `marker`."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1 and old in cells[0].source, marker
    cells[0].source = cells[0].source.replace(old, new)


def write_submissions(root: Path) -> dict[str, Path]:
    """Write the two submission folders (normal and short time limit); return them."""
    normal, short = root / "normal", root / "short"
    paths = {name: folder / name / f"{STEM}.ipynb" for folder, names in
             [(normal, ["correct", "blank", "wrong", "crashing", "corrupt", "empty"]),
              (short, ["hanging", "writer"])] for name in names}
    for path in paths.values():
        path.parent.mkdir(parents=True)
    nbformat.write(chapter(), paths["correct"])
    nbformat.write(make_student.student_notebook(chapter()), paths["blank"])
    wrong = chapter()  # no ReLU after conv2: the public checks pass, the hidden one does not
    edit_cell(wrong, "class ReluNet(Net)", "self.pool(self.relu(self.conv2(x)))",
              "self.pool(self.conv2(x))")
    nbformat.write(wrong, paths["wrong"])
    crashing = chapter()  # the cell that defines TwoHeadNet raises first
    edit_cell(crashing, "class TwoHeadNet", "class TwoHeadNet",
              "raise RuntimeError('student bug')\n\n\nclass TwoHeadNet")
    nbformat.write(crashing, paths["crashing"])
    paths["corrupt"].write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
    paths["empty"].write_text("")
    hanging = chapter()
    hanging.cells.insert(3, nbformat.v4.new_code_cell("while True:\n    pass"))
    nbformat.write(hanging, paths["hanging"])
    escape = paths["writer"].parent / "escaped.txt"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"open({str(escape)!r}, 'w').write('outside')")]), paths["writer"])
    return {"normal": normal, "short": short}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade both folders at once; return the rows by (student, exercise), timings and files."""
    root = tmp_path_factory.mktemp("submissions")
    folders = write_submissions(root)
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        normal = pool.submit(grade.grade_all, folders["normal"], 400, jobs=4)
        short = pool.submit(grade.grade_all, folders["short"], 30, jobs=2)
        rows = normal.result() + short.result()
    elapsed = time.monotonic() - start
    csv_path, table = grade.write_gradebook(rows, root / "grades")
    return {"rows": {(r["student"], r["exercise"]): r for r in rows}, "elapsed": elapsed,
            "csv": csv_path, "table": table, "list": rows}


def rows_of(graded: dict, student: str) -> list[dict]:
    """The gradebook rows of one student, in exercise order."""
    return [r for r in graded["list"] if r["student"] == student]


def test_the_chapter_with_its_solutions_scores_full_marks(graded: dict) -> None:
    """Every exercise of the chapter itself passes all its checks, public and hidden."""
    rows = rows_of(graded, "correct")
    assert [r["exercise"] for r in rows] == ["ch02-ex1", "ch02-ex2", "ch02-ex3"]
    for row in rows:
        assert float(row["score"]) == float(row["max_score"]) > 0, row
        assert row["status"].startswith("passed") and "raised" not in row["status"], row
        assert "WROTE OUTSIDE" not in row["status"], row


def test_the_student_edition_unanswered_scores_nothing(graded: dict) -> None:
    """The chapter's own variables pass no check: the handed-out notebook, unanswered, gets 0."""
    rows = rows_of(graded, "blank")
    assert [r["exercise"] for r in rows] == ["ch02-ex1", "ch02-ex2", "ch02-ex3"]
    for row in rows:
        assert float(row["score"]) == 0 < float(row["max_score"]), row
        assert row["status"].startswith("failed") and "raised" not in row["status"], row


def test_a_wrong_answer_loses_the_hidden_points_only(graded: dict) -> None:
    """No ReLU after conv2: shape and count still right (public), the function wrong (hidden)."""
    row = graded["rows"][("wrong", "ch02-ex1")]
    assert (float(row["score"]), float(row["max_score"])) == (1, 3), row
    assert "failed" in row["status"] and "differs from Net" in row["status"], row
    for label in ("ch02-ex2", "ch02-ex3"):
        other = graded["rows"][("wrong", label)]
        assert other["score"] == other["max_score"], other


def test_a_crashing_cell_is_reported_and_costs_its_exercise(graded: dict) -> None:
    """The cell raises, the notebook runs on (otter), the exercise scores 0, the row says why."""
    row = graded["rows"][("crashing", "ch02-ex3")]
    assert (float(row["score"]), float(row["max_score"])) == (0, 3), row
    assert "RuntimeError: student bug" in row["status"], row
    first = graded["rows"][("crashing", "ch02-ex1")]
    assert first["score"] == first["max_score"], first


@pytest.mark.parametrize(("student", "reason"), [("corrupt", "not valid JSON"),
                                                 ("empty", "empty file"),
                                                 ("hanging", "time limit")])
def test_unusable_notebooks_get_zero_and_the_reason(graded: dict, student: str,
                                                    reason: str) -> None:
    """Every exercise of a corrupt, empty or hanging notebook: 0 of its points, and why."""
    rows = rows_of(graded, student)
    assert [r["exercise"] for r in rows] == ["ch02-ex1", "ch02-ex2", "ch02-ex3"]
    for row in rows:
        assert float(row["score"]) == 0 and float(row["max_score"]) > 0, row
        assert reason in row["status"], row


def test_the_hanging_notebook_is_stopped_at_its_time_limit(graded: dict) -> None:
    """The whole run takes about as long as the slow run, not forever."""
    assert graded["elapsed"] < 400


def test_a_write_outside_the_grading_folder_is_reported(graded: dict) -> None:
    """The notebook that writes into its student's folder has that in every row's status."""
    for row in rows_of(graded, "writer"):
        assert "WROTE OUTSIDE ITS FOLDER" in row["status"] and "escaped.txt" in row["status"], row


def test_gradebook_files(graded: dict) -> None:
    """gradebook.csv: the six columns, one row per student and exercise; gradebook.md beside it."""
    with open(graded["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == grade.FIELDS
    assert len(rows) == 8 * 3
    assert {r["student"] for r in rows} == {"correct", "blank", "wrong", "crashing", "corrupt",
                                            "empty", "hanging", "writer"}
    table = graded["table"].read_text()
    assert table.startswith("# Gradebook") and "| correct | 8 | 8 |" in table


def test_grading_copy_checks_each_exercise_after_its_last_code_cell() -> None:
    """Student check cells go; otter's check metadata sits on each exercise's last code cell."""
    nb = make_student.student_notebook(chapter())
    assert sum("grader.check(" in c.source for c in nb.cells) == 3
    copy = grade.grading_copy(nb, {"ch02-ex1", "ch02-ex3"})
    assert not any("grader.check(" in c.source for c in copy.cells)
    marked = {test: c.source for c in copy.cells
              for test in c.metadata.get("otter", {}).get("tests", [])}
    assert marked == {"ch02-ex1": "# Your answer to exercise ch02-ex1\n",
                      "ch02-ex3": "# Your answer to exercise ch02-ex3\n"}


def test_read_submission_says_what_is_wrong(tmp_path: Path) -> None:
    """Empty, non-JSON and non-notebook files are named as such; a notebook is read."""
    cases = {"empty": ("  \n", "empty file"), "json": ("{", "not valid JSON"),
             "nb": ('{"cells": 3}', "not a valid notebook")}
    for name, (text, reason) in cases.items():
        (tmp_path / name).write_text(text)
        assert reason in grade.read_submission(tmp_path / name)[1]
    nbformat.write(chapter(), tmp_path / "ok.ipynb")
    assert grade.read_submission(tmp_path / "ok.ipynb")[1] == ""


def exercises_by_chapter() -> dict[str, list[str]]:
    """The exercise labels of every chapter, in order."""
    return {path.stem: [label for _, label in grade.exercise_labels(nbformat.read(path, 4))]
            for path in CHAPTERS}


def test_which_exercises_have_checks() -> None:
    """Lists the exercises with and without checks; a chapter with checks covers all of them.

    A chapter that has a grading/ folder must have exactly one check file per exercise (fails when
    an exercise is added or relabelled without its check, or a check outlives its exercise).
    Chapters without a grading/ folder are the known gaps: they are listed in a warning, which
    every test run shows, and in book/instructors.md ("Gaps").
    """
    covered, gaps = [], []
    for stem, labels in exercises_by_chapter().items():
        checks = grade.chapter_checks(stem)
        if not (grade.CHECKS / stem).is_dir():
            gaps += labels
            continue
        assert [c.label for c in checks] == labels, stem
        for check in checks:
            assert check.path.stem == check.label, check.path
            assert check.automatic or check.manual_points > 0, check.label
        covered += labels
    assert {p.name for p in grade.CHECKS.iterdir() if p.is_dir()} <= {p.stem for p in CHAPTERS}
    assert covered, "no exercise has checks"
    print("exercises with checks:", ", ".join(covered))
    if gaps:
        warnings.warn(f"exercises without checks (grading/ has no folder for their chapter): "
                      f"{', '.join(gaps)}", stacklevel=1)


# Checks accept any correct answer: each check file run (in this process) on answers written in
# other ways than the chapter's solution, and on wrong ones.

def run_check(chapter_stem: str, label: str, env: dict) -> list[bool]:
    """Run one exercise's check file on `env`; return whether each test case passed."""
    test_file = ExceptionTestFile.from_file(str(ROOT / "grading" / chapter_stem / f"{label}.py"))
    test_file.run(env)
    return [result.passed for result in test_file.test_case_results]


def reduced_mean_std(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct: reduce over every dimension but the channels."""
    pixels = images.double() / 255
    return pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3), unbiased=False)


def transposed_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Correct, another way: channels first, then one row per channel; lists of floats."""
    rows = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return rows.mean(dim=1).tolist(), rows.var(dim=1, unbiased=False).sqrt().tolist()


def looped_mean_std(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right numbers, but the Python loop the exercise rules out."""
    pixels = images.double() / 255
    means = torch.stack([pixels[:, c].mean() for c in range(pixels.shape[1])])
    return means, torch.stack([pixels[:, c].std(unbiased=False) for c in range(pixels.shape[1])])


def quick_mean_std(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chapter's bug: view mixes the channels of different images."""
    pixels = images.double().view(images.shape[1], -1) / 255
    return pixels.mean(dim=1), pixels.std(dim=1, unbiased=False)


@pytest.mark.parametrize(("answer", "expected"), [(reduced_mean_std, [True, True]),
                                                  (transposed_mean_std, [True, True]),
                                                  (looped_mean_std, [True, False]),
                                                  (None, [False, False])])
def test_ch01_ex1_accepts_any_fix(answer, expected: list[bool]) -> None:
    """Two different fixes pass; a loop loses the hidden case; the bug alone passes nothing."""
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    env = {"train_images": images, "quick_mean_std": quick_mean_std}
    if answer is not None:
        env[answer.__name__] = answer
    assert run_check("01_data_pipelines", "ch01-ex1", env) == expected


class SlicingHorizon(WindowDataset):
    """Correct, another way: keeps its own horizon, slices without calling the parent."""

    def __init__(self, series, window: int = 8, horizon: int = 3):
        super().__init__(series, window)
        self.steps = horizon

    def __len__(self) -> int:
        return max(0, self.series.shape[0] - self.window - self.steps + 1)

    def __getitem__(self, index: int):
        if index >= len(self) or index < 0:
            raise IndexError("past the end")
        start = index + self.window
        return self.series[index:start].clone(), self.series[start:start + self.steps].clone()


class OffByOneHorizon(SlicingHorizon):
    """Wrong: one item too many (the last one has a short target)."""

    def __len__(self) -> int:
        return super().__len__() + 1


@pytest.mark.parametrize(("answer", "expected"), [(SlicingHorizon, [True, True, True]),
                                                  (OffByOneHorizon, [True, False, False])])
def test_ch01_ex3_checks_behaviour(answer: type, expected: list[bool]) -> None:
    """Another correct implementation passes; an off-by-one length fails."""
    daily = pd.DataFrame(torch.randn(46, 2, generator=torch.Generator().manual_seed(1)).numpy())
    env = {"daily": daily, "WindowDataset": WindowDataset, "HorizonWindowDataset": answer}
    assert run_check("01_data_pipelines", "ch01-ex3", env) == expected


def deep_head(width: int = 64, depth: int = 3) -> nn.Sequential:
    """The chapter's bug: the same Linear object `depth` times."""
    block = [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*block * depth, nn.Linear(width, 1))


def nested_head(width: int = 64, depth: int = 3) -> nn.Sequential:
    """Correct, another way: a Sequential of Sequential blocks."""
    blocks = [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)]
    return nn.Sequential(*blocks, nn.Linear(width, 1))


def fixed_width_head(width: int = 64, depth: int = 3) -> nn.Sequential:
    """Half right: separate layers, but ignores `width` and `depth`."""
    return nested_head()


@pytest.mark.parametrize(("answer", "expected"), [(nested_head, [True, True]),
                                                  (fixed_width_head, [True, False]),
                                                  (None, [False, False])])
def test_ch02_ex2_accepts_any_fix(answer, expected: list[bool]) -> None:
    """A nested fix passes; one that ignores its arguments loses the hidden case; the bug fails."""
    env = {"deep_head": deep_head}
    if answer is not None:
        env["fixed_" + answer.__name__] = answer
    assert run_check("02_models_three_ways", "ch02-ex2", env) == expected


class BestEpochStopping(Callback):
    """Correct, another way: remembers the best epoch number, not a counter."""

    def __init__(self, monitor: str = "valid_loss", mode: str = "min", patience: int = 2):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.best, self.best_epoch = None, 0

    def better(self, value: float) -> bool:
        """True if `value` beats the best so far."""
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, trainer, row: dict) -> None:
        if self.better(row[self.monitor]):
            self.best, self.best_epoch = row[self.monitor], row["epoch"]
        elif row["epoch"] - self.best_epoch >= self.patience:
            trainer.stop_training = True


class ImpatientStopping(BestEpochStopping):
    """Wrong: stops at the first epoch that does not improve, and can cancel a stop."""

    def on_epoch_end(self, trainer, row: dict) -> None:
        improved = self.better(row[self.monitor])
        self.best = row[self.monitor] if improved else self.best
        trainer.stop_training = not improved


@pytest.mark.parametrize(("answer", "expected"), [
    (BestEpochStopping, [True] * 4), (ImpatientStopping, [True, False, False, False])])
def test_ch03_ex1_checks_behaviour(answer: type, expected: list[bool]) -> None:
    """Another correct callback passes every case; an impatient one fails the behaviour cases."""
    env = {"Callback": Callback, "EarlyStopping": answer}
    assert run_check("03_training_loops", "ch03-ex1", env) == expected


def save_run(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
             epoch: int) -> None:
    """Chapter 5's saver: weights, optimizer, scheduler, epoch and RNG states."""
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "rng": rng_states()}, path)


def load_run(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> int:
    """Chapter 5's bug: the scheduler is saved but not restored."""
    saved = torch.load(path, weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    restore_rng_states(saved["rng"])
    return saved["epoch"]


def resume_everything(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                      scheduler) -> int:
    """Correct, another way: restore by key, in another order."""
    saved = torch.load(path, weights_only=True)
    restore_rng_states(saved["rng"])
    for key, target in {"scheduler": scheduler, "optimizer": optimizer, "model": model}.items():
        target.load_state_dict(saved[key])
    return int(saved["epoch"])


def load_without_rng(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler) -> int:
    """Half right: restores the scheduler but forgets the random number generators."""
    saved = torch.load(path, weights_only=True)
    for key, target in {"scheduler": scheduler, "optimizer": optimizer, "model": model}.items():
        target.load_state_dict(saved[key])
    return saved["epoch"]


@pytest.mark.parametrize(("answer", "expected"), [(resume_everything, [True, True]),
                                                  (load_without_rng, [True, False]),
                                                  (None, [False, False])])
def test_ch05_ex1_accepts_any_fix(answer, expected: list[bool]) -> None:
    """Another complete fix passes; forgetting the RNGs loses the hidden case; the bug fails."""
    env = {"save_run": save_run, "load_run": load_run, "rng_states": rng_states,
           "restore_rng_states": restore_rng_states}
    if answer is not None:
        env[answer.__name__] = answer
    assert run_check("05_saving_and_loading", "ch05-ex1", env) == expected


class UnaddedBlock(nn.Module):
    """The chapter 7 bug: the shortcut is computed, never added."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out)


class AddedBlock(UnaddedBlock):
    """Correct, another way: the shortcut added with torch.add, F.relu replaced by clamp."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x)).clamp(min=0)))
        return torch.add(out, shortcut).clamp(min=0)


class IdentityOnlyBlock(UnaddedBlock):
    """Half right: adds x only when the shape is kept (the projection is never used)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.relu(out + x) if self.downsample is None else out


class BranchlessBlock(UnaddedBlock):
    """Wrong: passes the chapter's check by returning relu(shortcut) alone, without the branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x if self.downsample is None else self.downsample(x))


@pytest.mark.parametrize(("answer", "expected"), [(AddedBlock, [True, True]),
                                                  (IdentityOnlyBlock, [False, False]),
                                                  (BranchlessBlock, [True, False]),
                                                  (None, [False, False])])
def test_ch07_ex3_accepts_any_fix(answer, expected: list[bool]) -> None:
    """Another correct fix passes; a half fix fails; a block without its branch loses the hidden
    case; the bug alone (the chapter's TutorialBlock) passes nothing."""
    env = {"TutorialBlock": UnaddedBlock, "check_block": object}
    if answer is not None:
        env["Fixed" + answer.__name__] = answer
    assert run_check("07_resnet_from_scratch", "ch07-ex3", env) == expected


class SlicedPad(nn.Module):
    """Correct, another way: zeros concatenated after a strided slice."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., ::self.stride, ::self.stride]
        zeros = x.new_zeros(x.shape[0], self.extra, *x.shape[2:])
        return torch.cat([x, zeros], dim=1)


class PooledPad(SlicedPad):
    """Half right: average-pools instead of subsampling (right shapes, other values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(x, self.stride) if self.stride > 1 else x
        return nn.functional.pad(pooled, (0, 0, 0, 0, 0, self.extra))


@pytest.mark.parametrize(("answer", "expected"), [(SlicedPad, [True, True]),
                                                  (PooledPad, [True, False]),
                                                  (nn.Identity, [False, False])])
def test_ch07_ex1_checks_behaviour(answer: type, expected: list[bool]) -> None:
    """Another correct shortcut passes; pooling loses the hidden case; no shortcut fails."""
    env = {"PadShortcut": (lambda *args: nn.Identity()) if answer is nn.Identity else answer}
    assert run_check("07_resnet_from_scratch", "ch07-ex1", env) == expected


def epoch_orders(dataset, world_size: int, rank: int, epochs: int,
                 batch_size: int = 4) -> list[list[int]]:
    """The chapter's bug: the sampler's epoch is never set, so every epoch repeats epoch 0."""
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                                  seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    return [[i for (batch,) in loader for i in batch.tolist()] for _ in range(epochs)]


def reseeded_epoch_orders(dataset, world_size: int, rank: int, epochs: int,
                          batch_size: int = 4) -> list[list[int]]:
    """Correct, another way: a new sampler per epoch, seeded with the epoch."""
    orders = []
    for epoch in range(epochs):
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size,
                                                      rank=rank, seed=epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler)
        orders.append([i for (batch,) in loader for i in batch.tolist()])
    return orders


def rank_seeded_epoch_orders(dataset, world_size: int, rank: int, epochs: int,
                             batch_size: int = 4) -> list[list[int]]:
    """Wrong: a reshuffle seeded by rank and epoch, so the ranks' shares overlap."""
    orders = []
    for epoch in range(epochs):
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size,
                                                      rank=rank, seed=rank)
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    return orders


@pytest.mark.parametrize(("answer", "expected"), [(reseeded_epoch_orders, [True, True]),
                                                  (rank_seeded_epoch_orders, [False, False]),
                                                  (None, [False, False])])
def test_ch11_ex1_accepts_any_fix(answer, expected: list[bool]) -> None:
    """Another correct fix passes; shares that overlap across ranks and the bug fail."""
    env = {"epoch_orders": epoch_orders}
    if answer is not None:
        env[answer.__name__] = answer
    assert run_check("11_distributed_training", "ch11-ex1", env) == expected


def strip_and_load(path: Path, model: nn.Module) -> nn.Module:
    """Correct: strip the prefix by hand and load strictly."""
    state = torch.load(path, weights_only=True)
    model.load_state_dict({k[len("module."):] if k.startswith("module.") else k: v
                           for k, v in state.items()})
    return model


def lenient_load(path: Path, model: nn.Module) -> nn.Module:
    """Half right: loads both kinds, but strict=False accepts any file."""
    state = torch.load(path, weights_only=True)
    model.load_state_dict({k.replace("module.", ""): v for k, v in state.items()}, strict=False)
    return model


@pytest.mark.parametrize(("answer", "expected"), [(strip_and_load, [True, True]),
                                                  (lenient_load, [True, False])])
def test_ch11_ex2_checks_behaviour(answer, expected: list[bool]) -> None:
    """A strict loader passes; strict=False loses the hidden case."""
    assert run_check("11_distributed_training", "ch11-ex2", {answer.__name__: answer}) == expected


def strided_shard(n: int, world_size: int, rank: int) -> list[int]:
    """Correct: every world_size-th index from rank."""
    return list(range(rank, n, world_size))


def block_shard(n: int, world_size: int, rank: int) -> range:
    """Correct, another way: contiguous blocks whose sizes differ by at most one."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def ceil_block_shard(n: int, world_size: int, rank: int) -> range:
    """Wrong: blocks of ceil(n / world_size) leave the last rank short (1,001 over 4: 248)."""
    size = -(-n // world_size)
    return range(min(n, rank * size), min(n, (rank + 1) * size))


@pytest.mark.parametrize(("answer", "expected"), [(strided_shard, [True, True]),
                                                  (block_shard, [True, True]),
                                                  (ceil_block_shard, [False, False])])
def test_ch11_ex3_checks_behaviour(answer, expected: list[bool]) -> None:
    """Balanced shards pass, strided or in blocks; unbalanced blocks fail."""
    assert run_check("11_distributed_training", "ch11-ex3", {answer.__name__: answer}) == expected


def line_without_zero_grad(x: torch.Tensor, y: torch.Tensor, steps: int = 200,
                           lr: float = 0.1) -> torch.Tensor:
    """Chapter 9's bug: gradients pile up, since the loop never clears them."""
    params = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([params], lr=lr)
    for _ in range(steps):
        ((params[0] * x + params[1] - y) ** 2).mean().backward()
        optimizer.step()
    return params.detach()


def line_by_hand(x: torch.Tensor, y: torch.Tensor, steps: int = 200,
                 lr: float = 0.1) -> tuple[float, float]:
    """Correct, another way: gradient descent with the gradient written out, no optimizer."""
    a = b = 0.0
    for _ in range(steps):
        error = a * x + b - y
        a, b = a - lr * 2 * (error * x).mean().item(), b - lr * 2 * error.mean().item()
    return a, b


def line_for_the_check_only(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Wrong: the least-squares line of the chapter's check, whatever the points."""
    return 1.9657, -1.0011


@pytest.mark.parametrize(("answer", "expected"), [(line_by_hand, [True, True]),
                                                  (line_for_the_check_only, [True, False]),
                                                  (None, [False, False])])
def test_ch09_ex1_accepts_any_fix(answer, expected: list[bool]) -> None:
    """A fix with no optimizer passes; a hard-coded line loses the hidden case; the bug fails."""
    env = {"fit_line": line_without_zero_grad}
    if answer is not None:
        env["fixed_" + answer.__name__] = answer
    assert run_check("09_how_learning_works", "ch09-ex1", env) == expected


def valley_losses(momentum: float, lr: float = 0.1) -> list[float]:
    """The 61 losses of SGD on chapter 9's valley, from its start, computed another way."""
    w = torch.tensor([-9.0, 2.0], dtype=torch.float64)
    velocity, losses = torch.zeros(2, dtype=torch.float64), []
    for _ in range(60):
        losses.append(float(w[0] ** 2 / 50 + w[1] ** 2))
        velocity = momentum * velocity + torch.stack([w[0] / 25, 2 * w[1]])
        w = w - lr * velocity
    return losses + [float(w[0] ** 2 / 50 + w[1] ** 2)]


@pytest.mark.parametrize(("answer", "expected"), [
    ({m: valley_losses(m) for m in (0, 0.5, 0.9, 0.99)}, [True, True]),
    ({m: valley_losses(m, lr=0.2) for m in (0, 0.5, 0.9, 0.99)}, [True, False]),
    ({m: valley_losses(m)[1:] for m in (0, 0.5, 0.9, 0.99)}, [False, False]),
    ({m: valley_losses(m) for m in (0, 0.5, 0.9)}, [False, False])])
def test_ch09_ex3_checks_the_losses(answer: dict, expected: list[bool]) -> None:
    """SGD's losses (float64, by hand) pass; another lr, 60 losses or a momentum missing fail."""
    assert run_check("09_how_learning_works", "ch09-ex3", {"momentum_losses": answer}) == expected


def swapped_confusion_counts(labels: torch.Tensor, predictions: torch.Tensor,
                             num_classes: int = 10) -> torch.Tensor:
    """The chapter's bug: rows are the answers."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for true, predicted in zip(labels.tolist(), predictions.tolist()):
        counts[predicted, true] += 1
    return counts


def looped_confusion_counts(labels: torch.Tensor, predictions: torch.Tensor,
                            num_classes: int = 10) -> torch.Tensor:
    """Correct: the loop with the indices in order."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for true, predicted in zip(labels.tolist(), predictions.tolist()):
        counts[true, predicted] += 1
    return counts


def numpy_confusion_counts(labels, predictions, num_classes=10):
    """Correct, another way: NumPy's add.at on a nested list's worth of cells."""
    counts = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts.tolist()


def ten_class_confusion_counts(labels, predictions, num_classes=10):
    """Right on ten classes, but ignores num_classes."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(np.asarray(labels), np.asarray(predictions), labels=range(10))


@pytest.mark.parametrize(("answer", "expected"), [(looped_confusion_counts, [True, True]),
                                                  (numpy_confusion_counts, [True, True]),
                                                  (ten_class_confusion_counts, [True, False]),
                                                  (None, [False, False])])
def test_ch08_ex1_accepts_any_fix(answer, expected: list[bool]) -> None:
    """Fixes written in different ways pass; one that ignores num_classes loses the hidden case;
    the chapter's swapped indices pass nothing."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (300,), generator=generator)
    noise = torch.randint(0, 10, (300,), generator=generator)
    predictions = torch.where(torch.rand(300, generator=generator) < 0.6, labels, noise)
    env = {"data": types.SimpleNamespace(valid=types.SimpleNamespace(labels=labels)),
           "valid_pred": predictions, "confusion_counts": swapped_confusion_counts}
    if answer is not None:
        env["confusion_counts"] = answer  # the fix replaces the chapter's function
    assert run_check("08_cifar10_ten_classes", "ch08-ex1", env) == expected


def test_ch08_ex3_accepts_a_loop_and_rejects_top_1_for_all_k() -> None:
    """A plain Python answer passes; one that ignores k passes nothing."""
    def top_k_by_sorting(probabilities, labels, k):
        """Correct, another way: sort every row."""
        order = np.argsort(-np.asarray(probabilities), axis=1)[:, :k]
        return float(np.mean([label in row for label, row in zip(np.asarray(labels), order)]))

    def top_k_ignoring_k(probabilities, labels, k):
        """Wrong: always the plain accuracy."""
        return (probabilities.argmax(1) == labels).float().mean().item()

    probabilities = torch.softmax(torch.randn(50, 10, generator=torch.Generator().manual_seed(1)), 1)
    data = types.SimpleNamespace(valid=types.SimpleNamespace(labels=torch.arange(50) % 10))
    for answer, expected in ((top_k_by_sorting, [True, True]), (top_k_ignoring_k, [False, False])):
        env = {"p_valid": probabilities, "data": data, answer.__name__: answer}
        assert run_check("08_cifar10_ten_classes", "ch08-ex3", env) == expected
# --- chapter 10 ----------------------------------------------------------------------------------

def ch10_env() -> dict:
    """What the chapter's train_head_only uses from its notebook: device, LR, loss_fn."""
    from functools import partial

    from torchbook.zoo import smoothed_bce
    return {"device": torch.device("cpu"), "LR": 0.05,
            "loss_fn": partial(smoothed_bce, smoothing=0.1)}


def ch10_head_trainer(freeze_first: bool, statistics_frozen_by: str = "train_except_frozen"):
    """The chapter's train_head_only, buggy (mode set before the freeze) or fixed in two ways."""
    from torchbook.datasets import TensorBatches
    from torchbook.recipe import prepare_batch
    from torchbook.training import train_except_frozen, train_step
    env = ch10_env()

    def train_head_only(model, images, labels, epochs=2):
        loader = TensorBatches(images, labels.float().unsqueeze(1), batch_size=10, shuffle=True,
                               transform=lambda x: prepare_batch(x, env["device"]))
        if not freeze_first:
            train_except_frozen(model)
        model.requires_grad_(False)
        model.fc.requires_grad_(True)
        if freeze_first and statistics_frozen_by == "train_except_frozen":
            train_except_frozen(model)
        elif freeze_first:  # another fix: everything in eval mode, the head's Linear has no mode
            model.eval()
        optimizer = torch.optim.SGD(model.fc.parameters(), lr=env["LR"], momentum=0.9)
        for _ in range(epochs):
            for batch in loader:
                train_step(model, batch, env["loss_fn"], optimizer, env["device"])
        return model.eval()

    return train_head_only


@pytest.mark.parametrize(("answer", "expected"), [
    (ch10_head_trainer(freeze_first=True), [True, True]),
    (ch10_head_trainer(freeze_first=True, statistics_frozen_by="eval"), [True, True]),
    (ch10_head_trainer(freeze_first=False), [False, False])])
def test_ch10_ex2_accepts_any_fix(answer, expected: list[bool]) -> None:
    """Two fixes pass (train_except_frozen after the freeze, or eval mode); the bug fails."""
    env = {**ch10_env(), "train_head_only": answer}
    assert run_check("10_reusing_trained_models", "ch10-ex2", env) == expected


def test_ch10_ex2_a_head_left_untrained_loses_the_hidden_point() -> None:
    """A function that only freezes (and trains nothing) keeps the backbone but not the point."""
    def freeze_head_only(model, images, labels, epochs=2):
        return model.requires_grad_(False).eval()

    assert run_check("10_reusing_trained_models", "ch10-ex2",
                     {**ch10_env(), "freeze_head_only": freeze_head_only}) == [True, False]


def ch10_torchvision_names(state_dict: dict) -> dict:
    """The chapter's torchvision_names."""
    from torchbook.checkpoints import rename_keys
    for pattern, replacement in [(r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."),
                                 (r"^stages\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}."),
                                 (r"\.shortcut\.", ".downsample.")]:
        state_dict = rename_keys(state_dict, pattern, replacement)
    return state_dict


def loop_names_back(state_dict: dict) -> dict:
    """Correct, another way: plain string edits, key by key."""
    renamed = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head.startswith("layer"):
            key = f"stages.{int(head[5:]) - 1}.{rest}".replace(".downsample.", ".shortcut.")
        elif head in ("conv1", "bn1"):
            key = f"stem.{0 if head == 'conv1' else 1}.{rest}"
        renamed[key] = value
    return renamed


def names_without_shortcuts(state_dict: dict) -> dict:
    """Wrong: forgets downsample -> shortcut, so the projection shortcuts do not load."""
    from torchbook.checkpoints import rename_keys
    for pattern, replacement in [(r"^conv1\.", "stem.0."), (r"^bn1\.", "stem.1."),
                                 (r"^layer(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.")]:
        state_dict = rename_keys(state_dict, pattern, replacement)
    return state_dict


@pytest.mark.parametrize(("answer", "expected"), [(loop_names_back, [True, True]),
                                                  (names_without_shortcuts, [False, False]),
                                                  (None, [False, False])])
def test_ch10_ex1_checks_behaviour(answer, expected: list[bool]) -> None:
    """Another correct renaming passes; one that misses the projections fails; none fails."""
    env = {"torchvision_names": ch10_torchvision_names}
    if answer is not None:
        env[answer.__name__] = answer
    assert run_check("10_reusing_trained_models", "ch10-ex1", env) == expected


def stage_groups(model, lr, decay):
    """Correct, another way: one group per top-level child, by name."""
    power = {"fc": 0, "stem": 4}
    groups = []
    for name, child in model.named_children():
        if name == "stages":
            groups += [{"params": list(stage.parameters()), "lr": lr * decay ** (3 - i)}
                       for i, stage in enumerate(child)]
        elif list(child.parameters()):
            groups.append({"params": list(child.parameters()), "lr": lr * decay ** power[name]})
    return groups


def reversed_groups(model, lr, decay):
    """Wrong: the stem learns fastest and the head slowest."""
    parts = [model.stem, model.stages[0], model.stages[1], model.stages[2], model.fc]
    return [{"params": list(p.parameters()), "lr": lr * decay ** i} for i, p in enumerate(parts)]


@pytest.mark.parametrize(("answer", "expected"), [(stage_groups, [True, True]),
                                                  (reversed_groups, [False, False])])
def test_ch10_ex3_checks_behaviour(answer, expected: list[bool]) -> None:
    """Groups built another way pass; the learning rates the wrong way round fail."""
    env = {answer.__name__: answer}
    assert run_check("10_reusing_trained_models", "ch10-ex3", env) == expected
