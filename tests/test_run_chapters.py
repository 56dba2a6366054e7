"""Chapters executed once (tools/run_chapters.py): each runs, checked outputs match as in nbval."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from executed import executed_notebook, run_chapters
from scripts import import_script

nbtool = import_script("tools", "nbtool")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a small notebook of the given cells."""
    return nbformat.v4.new_notebook(cells=list(cells))


def code(source: str, *outputs: dict, count: int | None = 1,
         tags: tuple = ()) -> nbformat.NotebookNode:
    """Return a code cell with outputs (dicts as nbformat stores them)."""
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    cell.execution_count = count
    return cell


def stream(text: str, name: str = "stdout") -> dict:
    """Return a stream output."""
    return {"output_type": "stream", "name": name, "text": text}


CHECKED = "# NBVAL_CHECK_OUTPUT\nprint(x)"


def test_equal_checked_outputs_pass_and_split_streams_are_joined() -> None:
    """Streams are joined before comparing, as nbval does; unchecked cells may differ freely."""
    stored = notebook(code(CHECKED, stream("a\nb\n")), code("print(t)", count=None))
    run = notebook(code(CHECKED, stream("a\n"), stream("b\n")),
                   code("print(t)", stream("0.3 s\n")))
    assert run_chapters.checked_output_problems(stored, run) == []


def test_a_changed_value_or_new_stderr_in_a_checked_cell_fails() -> None:
    """A different printed value, or a warning on stderr, in a checked cell is reported."""
    stored = notebook(code(CHECKED, stream("shape (3, 32, 32)\n")))
    changed = notebook(code(CHECKED, stream("shape (3, 28, 28)\n")))
    warned = notebook(code(CHECKED, stream("shape (3, 32, 32)\n"),
                           stream("UserWarning: soon\n", "stderr")))
    assert "outputs differ" in run_chapters.checked_output_problems(stored, changed)[0]
    assert "stderr" in run_chapters.checked_output_problems(stored, warned)[0]


def test_results_are_compared_but_images_and_counts_are_not() -> None:
    """execute_result text counts; PNG data and execution counts do not (nbval without nbdime)."""
    def result(text: str, png: str, count: int) -> dict:
        return {"output_type": "execute_result", "execution_count": count, "metadata": {},
                "data": {"text/plain": text, "image/png": png}}
    stored = notebook(code("# NBVAL_CHECK_OUTPUT\nx", result("1", "AAAA", 1)))
    same = notebook(code("# NBVAL_CHECK_OUTPUT\nx", result("1", "BBBB", 7)))
    other = notebook(code("# NBVAL_CHECK_OUTPUT\nx", result("2", "AAAA", 1)))
    assert run_chapters.checked_output_problems(stored, same) == []
    assert run_chapters.checked_output_problems(stored, other)


def test_other_code_unrun_references_and_other_markers_are_reported() -> None:
    """A run of other code is stale; nbval's skip and raises markers are refused, not ignored."""
    stored = notebook(code(CHECKED, stream("1\n")))
    assert "stale" in run_chapters.checked_output_problems(stored, notebook(code("print(y)")))[0]
    unrun = notebook(code(CHECKED, stream("1\n"), count=None))
    assert "unrun" in run_chapters.checked_output_problems(unrun, unrun)[0]
    skipped = notebook(code("# NBVAL_SKIP\nprint(1)"))
    assert "not supported" in run_chapters.checked_output_problems(skipped, skipped)[0]
    raising = notebook(code("1 / 0", tags=("raises-exception",)))
    assert "not supported" in run_chapters.checked_output_problems(raising, raising)[0]


def test_plan_runs_every_chapter_and_only_the_student_editions_that_differ(tmp_path: Path) -> None:
    """Chapters first; a student run only where solutions are removed, with its own models."""
    runs = run_chapters.plan_runs(CHAPTERS, tmp_path)
    chapters = [r["stem"] for r in runs if r["kind"] == "notebooks"]
    students = [r["stem"] for r in runs if r["kind"] == "student"]
    assert sorted(chapters) == [p.stem for p in CHAPTERS]
    assert sorted(students) == [p.stem for p in CHAPTERS if run_chapters.has_solutions(p)]
    assert [r["kind"] for r in runs] == ["notebooks"] * len(chapters) + ["student"] * len(students)
    for run in runs:
        if run["kind"] == "student":
            data = Path(run["env"]["BOOK_DATA_DIR"])
            assert (data / "sample").resolve() == (ROOT / "data" / "sample").resolve()
            assert not (data / "models").exists(), "student runs keep their own models"
    assert {r["kind"] for r in run_chapters.plan_runs(CHAPTERS, tmp_path, students=False)} \
        == {"notebooks"}


def test_a_failing_notebook_is_reported_with_its_error(tmp_path: Path) -> None:
    """A cell that raises fails the run, and the run says which error it was."""
    source = tmp_path / "99_broken.ipynb"
    nbformat.write(notebook(code("raise ValueError('planted')", count=None)), source)
    result = run_chapters.run_one({"kind": "notebooks", "stem": "99_broken", "source": source,
                                   "sha256": "x", "target": tmp_path / "out.ipynb", "env": {}},
                                  timeout=300)
    assert not result["ok"] and "planted" in result["error"]


@pytest.mark.notebooks
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_and_its_checked_outputs_match(chapter: Path) -> None:
    """The chapter executed without error, and its checked cells printed what is stored."""
    stored = nbformat.read(chapter, as_version=4)
    run = executed_notebook("notebooks", chapter.stem)
    problems = run_chapters.checked_output_problems(stored, run)
    assert not problems, "\n".join(problems)


def test_the_chapters_that_must_run_alone_run_after_the_others(monkeypatch) -> None:
    """Chapter 11 starts process groups and times them: nothing else runs beside it."""
    running, order = [], []

    def fake_run(run: dict, timeout: float, *options) -> dict:
        running.append(run["stem"])
        order.append((run["stem"], list(running)))
        running.remove(run["stem"])
        return {"kind": "notebooks", "stem": run["stem"], "seconds": 0.0, "ok": True,
                "error": None}

    monkeypatch.setattr(run_chapters, "run_one", fake_run)
    runs = [{"stem": stem} for stem in ("11_distributed_training", "03_x", "07_y")]
    run_chapters.run_all(runs, jobs=2, timeout=1)
    assert order[-1] == ("11_distributed_training", ["11_distributed_training"])
    assert "11_distributed_training" in run_chapters.RUN_ALONE


# --- what the runner stores: merged streams, cell times ------------------------------------------

def stream_output(name: str, text: str) -> nbformat.NotebookNode:
    """A stream output."""
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_merge_streams_keeps_each_line_once_in_order_and_is_idempotent() -> None:
    """The cause of lines printed twice in the book: merging twice in place. Ours is pure."""
    figure = nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"})
    outputs = [stream_output("stdout", "resumed after epoch 4\n"), figure,
               stream_output("stderr", "a warning\n"), stream_output("stdout", "trained epochs 5 to 8\n")]
    merged = nbtool.merge_streams(outputs)
    assert [o.get("name", o["output_type"]) for o in merged] == ["stdout", "display_data",
                                                                 "stderr"]
    assert merged[0]["text"] == "resumed after epoch 4\ntrained epochs 5 to 8\n"
    assert outputs[0]["text"] == "resumed after epoch 4\n"  # the input is left as it was
    assert nbtool.merge_streams(merged) == merged


def test_every_executed_chapter_prints_each_line_of_a_cell_once() -> None:
    """One stdout output per cell at most, and no cell whose last lines repeat."""
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb")):
        for index, cell in enumerate(executed_notebook("notebooks", path.stem).cells):
            streams = [o for o in cell.get("outputs", []) if o["output_type"] == "stream"]
            names = [o["name"] for o in streams]
            assert len(names) == len(set(names)), f"{path.stem} cell {index}: {names}"


def timed_cell(source: str, start: str, end: str) -> nbformat.NotebookNode:
    """A code cell with nbclient's execution timestamps."""
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["execution"] = {"iopub.execute_input": start, "shell.execute_reply": end}
    return cell


def test_slow_cells_names_each_cell_over_the_limit(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A chapter"),
        timed_cell("quick = 1", "2026-12-07T10:00:00.000000Z", "2026-12-07T10:00:01.500000Z"),
        timed_cell("model = load_or_train()\n", "2026-12-07T10:00:02Z", "2026-12-07T10:02:12Z"),
        timed_cell("\nplot()", "2026-12-07T10:02:12Z", "2026-12-07T10:04:13Z")])
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    assert run_chapters.cell_seconds(nb) == [(1, 1.5, "quick = 1"),
                                             (2, 130.0, "model = load_or_train()"),
                                             (3, 121.0, "plot()")]
    assert run_chapters.slow_cells(path, 120) == [
        {"cell": 2, "seconds": 130.0, "source": "model = load_or_train()"},
        {"cell": 3, "seconds": 121.0, "source": "plot()"}]
    assert run_chapters.slow_cells(path, 200) == []


def test_the_runner_warns_about_a_slow_cell(tmp_path: Path, capsys) -> None:
    result = {"kind": "notebooks", "stem": "08_x", "seconds": 251.0, "ok": True, "error": None,
              "slow_cells": [{"cell": 34, "seconds": 130.0, "source": "model = load()"}]}
    run_chapters.report_result(result, 120)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["notebooks", "08_x", "251.0", "s", "ok"]
    assert out[1] == ("    WARNING: cell 34 ran 130 s, over the 120 s a cell may take with "
                      "the models saved: 'model = load()'")
