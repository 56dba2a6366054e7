"""The student edition (tools/make_student.py): no solution survives, exercises stay, it still runs."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from executed import executed_notebook, run_chapters
from scripts import import_script

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
make_student = import_script("tools", "make_student")


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write the student edition once into a temporary folder; map chapter stem to its notebook."""
    out = tmp_path_factory.mktemp("student")
    return {p.stem: p for p in make_student.write_student_edition(out)}


def exercise_labels(nb: nbformat.NotebookNode) -> list[str]:
    """Return the exercise labels of a notebook's markdown cells."""
    return [label for c in nb.cells if c.cell_type == "markdown"
            for label in make_student._LABEL.findall(c.source)]


def test_solution_blocks_are_removed_with_their_fences() -> None:
    """Backtick and colon fences, longer fences around inner code, and the text around them."""
    text = ("Intro.\n\n```{exercise} Add\n:label: ex1\n\nAdd 1 and 2.\n```\n\n"
            "````{solution} ex1\n:class: dropdown\n\n```python\n1 + 2\n```\n````\n\n"
            ":::{solution} ex1\nThree.\n:::\nAfter.")
    stripped = make_student.strip_solution_blocks(text)
    assert "solution" not in stripped and "1 + 2" not in stripped and "Three." not in stripped
    assert stripped.startswith("Intro.") and stripped.endswith("After.")
    assert "```{exercise} Add\n:label: ex1\n\nAdd 1 and 2.\n```" in stripped


def test_an_unclosed_solution_block_is_an_error() -> None:
    """A solution block without its closing fence is reported, not silently eaten."""
    with pytest.raises(ValueError, match="unclosed"):
        make_student.strip_solution_blocks("```{solution} ex1\nnever closed\n")


def test_solution_cells_and_blocks_go_and_answer_cells_come() -> None:
    """On a small notebook: tagged code cells and {solution} cells go, each exercise gets a cell."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("```{exercise} Twice\n:label: t-ex1\n\nDouble x.\n```"),
        nbformat.v4.new_markdown_cell("```{solution} t-ex1\n:label: t-sol1\n\nMultiply.\n```"),
        nbformat.v4.new_code_cell("print(2 * x)", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print('footer')"),
    ])
    student = make_student.student_notebook(nb)
    assert [c.source for c in student.cells] == [
        "# Title", "x = 1", "```{exercise} Twice\n:label: t-ex1\n\nDouble x.\n```",
        "# Your answer to exercise t-ex1\n", "print('footer')"]
    assert len(nb.cells) == 6, "the original notebook is left alone"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_solution_survives_and_exercises_stay(edition: dict[str, Path], chapter: Path) -> None:
    """Every chapter's student notebook is valid, solution-free, and keeps every exercise."""
    original = nbformat.read(chapter, as_version=4)
    student = nbformat.read(edition[chapter.stem], as_version=4)
    nbformat.validate(student)
    for cell in student.cells:
        assert "solution" not in cell.metadata.get("tags", []), cell.source[:80]
        assert "{solution}" not in cell.source, cell.source[:80]
    assert exercise_labels(student) == exercise_labels(original)
    solution_code = [c.source for c in original.cells if make_student.is_solution_cell(c)]
    student_code = {c.source for c in student.cells if c.cell_type == "code"}
    assert not student_code & set(solution_code)
    assert student.cells[0].source == original.cells[0].source, "the title cell stays first"


@pytest.mark.notebooks
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_runs_in_fast_mode(edition: dict[str, Path], chapter: Path) -> None:
    """The stripped notebook executes top to bottom in fast mode, from notebooks/ like a chapter.

    Its run comes from tools/run_chapters.py (see tests/executed.py). A chapter without solution
    cells loses nothing but gains empty answer cells (comments): its own run stands for it.
    """
    original = nbformat.read(chapter, as_version=4)
    student = nbformat.read(edition[chapter.stem], as_version=4)
    if run_chapters.has_solutions(chapter):
        run = executed_notebook("student", chapter.stem)
        assert [c.source for c in run.cells] == [c.source for c in student.cells]
    else:
        answers = {c.source for cell in original.cells if cell.cell_type == "markdown"
                   for c in make_student.answer_cells(cell.source)}
        assert all(line.startswith("#") for a in answers for line in a.splitlines())
        student_code = [c.source for c in student.cells
                        if c.cell_type == "code" and c.source not in answers]
        assert student_code == [c.source for c in original.cells if c.cell_type == "code"]
        run = executed_notebook("notebooks", chapter.stem)
    errors = [o for c in run.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_public_checks_drop_hidden_cases_only() -> None:
    """public_checks keeps the public test cases and helpers, removes each hidden case whole."""
    source = ("from otter.test_files import test_case\n\nOK_FORMAT = False\nname = 'q'\n\n\n"
              "def helper():\n    return 1\n\n\n"
              "@test_case(points=1)\ndef test_public():\n    assert helper() == 1\n\n\n"
              "@test_case(\n    points=2,\n    hidden=True,\n)\ndef test_secret():\n"
              "    assert 'the secret' == 'the secret'\n\n\n"
              "@test_case(points=1, hidden=False)\ndef test_also_public():\n    pass\n")
    public = make_student.public_checks(source)
    assert "test_secret" not in public and "the secret" not in public and "points=2" not in public
    assert "def helper" in public and "test_public" in public and "test_also_public" in public
    compile(public, "public", "exec")
    only_hidden = "@test_case(points=1, hidden=True)\ndef test_x():\n    pass\n"
    assert make_student.public_checks(only_hidden) is None


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_edition_has_public_checks_and_check_cells(edition: dict[str, Path],
                                                   chapter: Path) -> None:
    """checks/<chapter>/ holds no hidden case; each checked exercise has a check cell after it."""
    folder = edition[chapter.stem].parent / "checks" / chapter.stem
    sources = {p.stem: p.read_text() for p in folder.glob("*.py")}
    assert set(sources) == set(make_student.checked_labels(chapter.stem))
    for label, text in sources.items():
        assert "hidden=True" not in text, label
        original = (ROOT / "grading" / chapter.stem / f"{label}.py").read_text()
        assert original.count("@test_case(") > text.count("@test_case(") > 0 or \
            "hidden=True" not in original, label
    cells = nbformat.read(edition[chapter.stem], as_version=4).cells
    for label in sources:
        answer = [i for i, c in enumerate(cells)
                  if c.source == f"# Your answer to exercise {label}\n"]
        assert len(answer) == 1, label
        assert f'grader.check("{label}")' in cells[answer[0] + 1].source, label
