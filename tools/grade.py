"""Grade student submissions with otter-grader: one gradebook row per student and exercise.

Usage:
    python tools/grade.py SUBMISSIONS [--out _build/grades] [--time-limit 600]

SUBMISSIONS holds one folder per student with chapter notebooks as handed in
(`SUBMISSIONS/<student>/NN_name.ipynb`). The checks of each exercise live in
`grading/<chapter stem>/<label>.py` (otter's exception-based test files; cases marked
`hidden=True` are the instructor's only). Each notebook is graded by otter's own non-containerised
runner (`otter run`, through `otter.api.grade_submission`) in a child process with a fresh kernel,
in a temporary folder (its own HOME, TMPDIR and BOOK_DATA_DIR with a copy of data/sample), in fast
mode, under a time limit after which the whole process tree is killed. A notebook that raises,
hangs, is empty or is not valid JSON gets rows saying so; files it creates or changes in the
repository or in the student's folder are reported in `status`. Writes `gradebook.csv` and
`gradebook.md` into --out. Read book/instructors.md for what is and is not isolated.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "grading"
FIELDS = ["student", "chapter", "exercise", "score", "max_score", "status"]
# The label of an exercise: the `:label:` option right after an {exercise} opening line.
_LABEL = re.compile(r"^(?:`{3,}|:{3,})\{exercise\}[^\n]*\n:label:\s*(\S+)", re.MULTILINE)
# Cells of the student edition that run the public checks; the grader puts its own in their place.
_CHECK_CELL = re.compile(r"otter\.Notebook\(|grader\.check\(")
# Folders whose files change for reasons other than the submission (caches, git, the grades).
_UNWATCHED = {"__pycache__", ".git", ".pytest_cache", ".ipynb_checkpoints"}


class Check(NamedTuple):
    """One exercise's check file: its label, its path, and what is left to a human."""

    label: str
    path: Path
    automatic: bool
    points: float
    manual: str
    manual_points: float


def load_check(path: Path) -> Check:
    """Read a check file's label, whether it has test cases, and its manual-review note."""
    from otter.test_files import test_case

    spec = runpy.run_path(str(path))
    cases = [v for v in spec.values() if isinstance(v, test_case)]
    if any(case.points is None for case in cases):
        raise ValueError(f"{path}: give every test case its points")
    return Check(spec["name"], path, bool(cases), sum(case.points for case in cases),
                 spec.get("manual", ""), float(spec.get("manual_points", 0)))


def chapter_checks(stem: str, checks_dir: Path = CHECKS) -> list[Check]:
    """Return the checks of a chapter, in exercise order ([] when it has none)."""
    folder = checks_dir / stem
    paths = sorted(folder.glob("*.py"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.stem)])
    return [load_check(p) for p in paths if not p.name.startswith("_")]


def build_autograder(checks: list[Check], dest: Path) -> Path:
    """Write otter's autograder zip (tests/ and otter_config.json) for the automatic checks."""
    with zipfile.ZipFile(dest, "w") as archive:
        for check in checks:
            if check.automatic:
                archive.write(check.path, f"tests/{check.label}.py")
        archive.writestr("otter_config.json", json.dumps({"print_summary": False}))
    return dest


def exercise_labels(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """Return (cell index, label) of every {exercise} in the notebook's markdown cells."""
    return [(i, label) for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            for label in _LABEL.findall(cell.source)]


def grading_copy(nb: nbformat.NotebookNode, labels: set[str]) -> nbformat.NotebookNode:
    """Drop the student's check cells; ask otter to check each exercise after its last code cell.

    An exercise's cells run up to the next exercise or the next markdown heading (`## Summary`).
    Their last code cell (the answer, or the solution in the chapter) gets otter's cell metadata
    `{"otter": {"tests": [label]}}`, so otter runs the check right there, on the variables as the
    exercise left them. Exercises without a code cell are checked at the end of the notebook.
    """
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells
                if not (c.cell_type == "code" and _CHECK_CELL.search(c.source))]
    found = exercise_labels(nb)
    for k, (start, label) in enumerate(found):
        end = found[k + 1][0] if k + 1 < len(found) else len(nb.cells)
        headings = [i for i in range(start + 1, end) if nb.cells[i].cell_type == "markdown"
                    and nb.cells[i].source.lstrip().startswith("#")]
        code = [c for c in nb.cells[start:min(headings, default=end)] if c.cell_type == "code"]
        if label in labels and code:
            code[-1].metadata.setdefault("otter", {}).setdefault("tests", []).append(label)
    return nb


def read_submission(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    """Return (notebook, "") or (None, what is wrong with the file)."""
    raw = path.read_bytes()
    if not raw.strip():
        return None, "empty file: nothing to grade"
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return None, f"not valid JSON ({type(error).__name__}: {str(error)[:80]})"
    try:
        nb = nbformat.reads(raw.decode(), as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # nbformat raises several kinds for a malformed notebook
        return None, f"not a valid notebook ({type(error).__name__}: {str(error)[:80]})"
    return nb, ""


def snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    """Map every file under `folders` (not caches or .git) to its (size, mtime in ns)."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if d not in _UNWATCHED]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                seen[path] = (info.st_size, info.st_mtime_ns)
    return seen


def changed_files(before: dict, after: dict) -> list[str]:
    """Files created, changed or removed between two snapshots."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def prepare_workdir(tmp: Path, stem: str, nb: nbformat.NotebookNode) -> Path:
    """Lay out a temporary folder where the chapter runs: its own data, HOME and TMPDIR."""
    for name in ("home", "tmp", "work", "data"):
        (tmp / name).mkdir()
    shutil.copytree(ROOT / "data" / "sample", tmp / "data" / "sample")
    nbformat.write(nb, tmp / "work" / f"{stem}.ipynb")
    return tmp / "work" / f"{stem}.ipynb"


def child_env(tmp: Path) -> dict[str, str]:
    """Environment of the grading process: fast mode, and HOME, TMPDIR, data inside `tmp`."""
    env = dict(os.environ, BOOK_FAST="1", HOME=str(tmp / "home"), TMPDIR=str(tmp / "tmp"),
               BOOK_DATA_DIR=str(tmp / "data"), MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.pop("JPY_PARENT_PID", None)
    return env


def kill_tree(process: subprocess.Popen) -> None:
    """Kill the grading process, its process group and every descendant (the kernel too)."""
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()


def run_otter(notebook: Path, autograder: Path, tmp: Path, time_limit: float) -> dict | str:
    """Grade one notebook in a child process; return otter's results, or why there are none."""
    result = tmp / "result.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--run-one", str(notebook),
               "--autograder", str(autograder), "--result", str(result)]
    with open(tmp / "grader.log", "wb") as log:
        process = subprocess.Popen(command, cwd=notebook.parent, env=child_env(tmp), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            return f"time limit: still running after {time_limit:g} s, stopped"
    kill_tree(process)  # a kernel left behind by a crashed runner goes too
    if not result.is_file():
        tail = (tmp / "grader.log").read_text(errors="replace").strip().splitlines()[-1:]
        return f"the grader failed (exit {process.returncode}): {' '.join(tail)[:120]}"
    return json.loads(result.read_text())


def grade_one(args: argparse.Namespace) -> int:
    """Child process: run otter on one notebook and write scores and cell errors as JSON."""
    from otter.api import grade_submission

    results = grade_submission(args.run_one, args.autograder, quiet=True)
    tests = {}
    for label, test_file in results.results.items():
        failed = [(re.sub(rf"^{re.escape(label)} - ", "case ", r.test_case.name or ""),
                   (r.message or "").strip().splitlines()[-1:])
                  for r in test_file.test_case_results if not r.passed]
        tests[label] = {"score": test_file.score, "possible": test_file.possible,
                        "failed": [f"{n}: {m[0] if m else 'failed'}" for n, m in failed]}
    errors = [f"{o.get('ename')}: {str(o.get('evalue'))[:100]}"
              for cell in results.notebook.cells for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    Path(args.result).write_text(json.dumps({"tests": tests, "errors": errors}))
    return 0


def rows_for(student: str, stem: str, checks: list[Check], outcome: dict | str,
             outside: list[str]) -> list[dict]:
    """Turn otter's results (or the reason there are none) into gradebook rows."""
    rows = []
    for check in checks:
        row = {"student": student, "chapter": stem, "exercise": check.label, "status": ""}
        notes = []
        if isinstance(outcome, str):
            possible = check.points if check.automatic else check.manual_points
            row.update(score=0, max_score=f"{possible:g}", status=outcome)
        elif not check.automatic:
            row.update(score="", max_score=f"{check.manual_points:g}")
        else:
            test = outcome["tests"].get(check.label, {"score": 0, "possible": 0,
                                                      "failed": ["not run"]})
            row.update(score=f"{test['score']:g}", max_score=f"{test['possible']:g}")
            notes.append("passed" if not test["failed"] else "failed " + "; ".join(test["failed"]))
            if outcome["errors"]:
                notes.append(f"the notebook raised {outcome['errors'][0]}")
        if check.manual and not isinstance(outcome, str):
            notes.append(f"review by hand: {check.manual}")
        if outside:
            notes.append("WROTE OUTSIDE ITS FOLDER: " + ", ".join(outside[:3])
                         + (f" and {len(outside) - 3} more" if len(outside) > 3 else ""))
        row["status"] = " | ".join(filter(None, [row["status"], *notes]))
        rows.append(row)
    return rows


def grade_notebook(student_dir: Path, path: Path, time_limit: float,
                   checks_dir: Path = CHECKS) -> list[dict]:
    """Grade one handed-in notebook; never raises for a bad submission."""
    stem, student = path.stem, student_dir.name
    checks = chapter_checks(stem, checks_dir)
    if not checks:
        return [{"student": student, "chapter": stem, "exercise": "-", "score": 0, "max_score": 0,
                 "status": "no checks for this chapter (grading/ has no such folder)"}]
    nb, problem = read_submission(path)
    if nb is None:
        return rows_for(student, stem, checks, problem, [])
    with tempfile.TemporaryDirectory(prefix="torchbook-grade-") as tmp_name:
        tmp = Path(tmp_name)
        automatic = {c.label for c in checks if c.automatic}
        notebook = prepare_workdir(tmp, stem, grading_copy(nb, automatic))
        autograder = build_autograder(checks, tmp / "autograder.zip")
        watched = [ROOT, student_dir.resolve()]
        before = snapshot(watched)
        outcome = run_otter(notebook, autograder, tmp, time_limit)
        outside = changed_files(before, snapshot(watched))
    return rows_for(student, stem, checks, outcome, outside)


def grade_safely(student_dir: Path, path: Path, time_limit: float, checks_dir: Path) -> list[dict]:
    """Grade one notebook; a failure of the grader itself becomes a row, never an exception."""
    start = time.monotonic()
    try:
        rows = grade_notebook(student_dir, path, time_limit, checks_dir)
    except Exception as error:  # the run goes on whatever one submission does
        rows = [{"student": student_dir.name, "chapter": path.stem, "exercise": "-", "score": 0,
                 "max_score": 0, "status": f"grader error: {type(error).__name__}: {error}"}]
    print(f"graded {student_dir.name}/{path.name} in {time.monotonic() - start:.0f} s", flush=True)
    return rows


def grade_all(submissions: Path, time_limit: float, checks_dir: Path = CHECKS,
              jobs: int = 1) -> list[dict]:
    """Grade every `<student>/NN_name.ipynb` under `submissions`, `jobs` notebooks at a time."""
    work = [(student_dir, path) for student_dir in sorted(submissions.iterdir())
            if student_dir.is_dir() for path in sorted(student_dir.glob("[0-9][0-9]_*.ipynb"))]
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        graded = pool.map(lambda item: grade_safely(*item, time_limit, checks_dir), work)
        return [row for rows in graded for row in rows]


def write_gradebook(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """Write gradebook.csv and a readable gradebook.md (rows, then totals per student)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gradebook.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Gradebook", "", "| " + " | ".join(FIELDS) + " |", "|" + " --- |" * len(FIELDS)]
    lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in FIELDS) + " |"
              for r in rows]
    lines += ["", "## Totals (scored rows; add what you mark by hand)", "",
              "| student | score | max_score |", "| --- | --- | --- |"]
    for student in sorted({r["student"] for r in rows}):
        mine = [r for r in rows if r["student"] == student and r["score"] != ""]
        total = sum(float(r["score"]) for r in mine)
        possible = sum(float(r["max_score"]) for r in mine)
        lines.append(f"| {student} | {total:g} | {possible:g} |")
    (out / "gradebook.md").write_text("\n".join(lines) + "\n")
    return out / "gradebook.csv", out / "gradebook.md"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "grades")
    parser.add_argument("--time-limit", type=float, default=600,
                        help="seconds one notebook may run, kernel start included")
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks graded at the same time (writes outside a submission's "
                             "folder are then reported for every notebook running meanwhile)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--autograder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        return grade_one(args)
    if args.submissions is None or not args.submissions.is_dir():
        parser.error("give the folder of submissions: SUBMISSIONS/<student>/NN_name.ipynb")
    csv_path, table = write_gradebook(
        grade_all(args.submissions, args.time_limit, jobs=args.jobs), args.out)
    print(f"wrote {csv_path} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
