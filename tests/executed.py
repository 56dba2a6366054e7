"""One execution per chapter for every notebook test: the runs of tools/run_chapters.py.

`make test` executes every chapter (and each student edition) once, in parallel, and sets
BOOK_EXECUTED to that folder; the tests then read those runs. Without BOOK_EXECUTED (e.g.
`pytest tests/test_notebooks.py -k 03`), a test executes the notebook it needs itself, once.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import nbformat
import pytest

from scripts import import_script

ROOT = Path(__file__).resolve().parents[1]
run_chapters = import_script("tools", "run_chapters")


def executed_folder() -> Path | None:
    """Return $BOOK_EXECUTED (the runs of tools/run_chapters.py), or None."""
    folder = os.environ.get("BOOK_EXECUTED")
    return (ROOT / folder).resolve() if folder else None


@lru_cache(maxsize=None)
def run_here(kind: str, stem: str) -> Path:
    """Execute one chapter (kind 'notebooks') or its student edition ('student') now; cached."""
    out = ROOT / "_build" / "executed-pytest"
    runs = [r for r in run_chapters.plan_runs(run_chapters.chapter_paths([stem]), out)
            if r["kind"] == kind and r["stem"] == stem]
    assert runs, f"{stem} has no {kind} run (without solutions it is its own student edition)"
    result = run_chapters.run_one(runs[0], timeout=1200)
    assert result["ok"], f"{kind}/{stem} failed:\n{result['error']}"
    return runs[0]["target"]


def executed_notebook(kind: str, stem: str) -> nbformat.NotebookNode:
    """Return the executed chapter or student notebook; fail with the run's error if it failed."""
    folder = executed_folder()
    if folder is None:
        return nbformat.read(run_here(kind, stem), as_version=4)
    report_path = folder / "report.json"
    if not report_path.is_file():
        pytest.fail(f"BOOK_EXECUTED={folder} has no report.json: run tools/run_chapters.py")
    run = json.loads(report_path.read_text())["runs"][kind].get(stem)
    if run is None:
        pytest.fail(f"{kind}/{stem} was not executed by tools/run_chapters.py (rerun it)")
    source = ROOT / "notebooks" / f"{stem}.ipynb"
    if run["sha256"] != run_chapters.sha256(source):
        pytest.fail(f"the run of {kind}/{stem} is stale: {source.name} changed since; rerun it")
    if not run["ok"]:
        pytest.fail(f"{kind}/{stem} failed to execute:\n{run['error']}", pytrace=False)
    return nbformat.read(folder / kind / f"{stem}.ipynb", as_version=4)
