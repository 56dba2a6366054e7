"""The grader (tools/grade.py, `make grade`): the gradebook of good and bad submissions of a chapter.

One chapter (02, fast mode) is graded as handed in by six students: correct (the chapter with its
solutions), wrong (a solution altered), crashing (a cell raises), corrupt (not JSON), empty, and,
in a second run with a short time limit, hanging (`while True: pass`) and one that writes into its
student's folder. Both runs go at the same time to keep the test near two minutes.
"""
from __future__ import annotations

import csv
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from scripts import import_script

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STEM = "02_models_three_ways"
grade = import_script("tools", "grade")
make_student = import_script("tools", "make_student")

# Exercises that have no check file in grading/ yet (book/instructors.md lists them too).
KNOWN_GAPS: set[str] = set()


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
             [(normal, ["correct", "wrong", "crashing", "corrupt", "empty"]),
              (short, ["hanging", "writer"])] for name in names}
    for path in paths.values():
        path.parent.mkdir(parents=True)
    nbformat.write(chapter(), paths["correct"])
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
        normal = pool.submit(grade.grade_all, folders["normal"], 400, jobs=3)
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


def test_a_wrong_answer_loses_the_hidden_points_only(graded: dict) -> None:
    """No ReLU after conv2: shape and count still right (public), the function wrong (hidden)."""
    row = graded["rows"][("wrong", "ch02-ex1")]
    assert (float(row["score"]), float(row["max_score"])) == (1, 3), row
    assert "failed" in row["status"] and "differs from Net" in row["status"], row
    for label in ("ch02-ex2", "ch02-ex3"):
        other = graded["rows"][("wrong", label)]
        assert other["score"] == other["max_score"], other


def test_a_crashing_cell_is_reported_and_costs_its_exercise(graded: dict) -> None:
    """The cell raises, the notebook runs on (otter), the exercise scores 0 and the row says why."""
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
    assert len(rows) == 7 * 3
    assert {r["student"] for r in rows} == {"correct", "wrong", "crashing", "corrupt", "empty",
                                            "hanging", "writer"}
    table = graded["table"].read_text()
    assert table.startswith("# Gradebook") and "| correct | 8 | 8 |" in table


def test_grading_copy_checks_each_exercise_after_its_last_code_cell() -> None:
    """Student check cells go; otter's check metadata sits on each exercise's last code cell."""
    nb = make_student.student_notebook(chapter(), STEM, frozenset({"ch02-ex1", "ch02-ex2"}))
    copy = grade.grading_copy(nb, {"ch02-ex1", "ch02-ex3"})
    assert not any("grader.check(" in c.source for c in copy.cells)
    marked = {t: c.source for c in copy.cells for t in c.metadata.get("otter", {}).get("tests", [])}
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


def test_which_exercises_have_checks() -> None:
    """Every exercise of every chapter has a check file, except the gaps listed in KNOWN_GAPS.

    Fails when a new exercise comes without checks (add grading/<chapter>/<label>.py or, if it
    must wait, list it here and in book/instructors.md), and when a check has no exercise.
    """
    exercises = {label for path in CHAPTERS
                 for _, label in grade.exercise_labels(nbformat.read(path, as_version=4))}
    checks = {c.label for path in CHAPTERS for c in grade.chapter_checks(path.stem)}
    assert sorted(exercises - checks) == sorted(KNOWN_GAPS)
    assert not checks - exercises, "check files without an exercise of that label"
    for path in CHAPTERS:
        for check in grade.chapter_checks(path.stem):
            assert check.path.stem == check.label and check.label.startswith(f"ch{path.stem[:2]}")
            assert check.automatic or check.manual_points > 0, check.label
