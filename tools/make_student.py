"""Write the student edition: every chapter notebook without its solutions, exercises kept.

Usage:
    python tools/make_student.py [--out _build/student]

Removes the code cells tagged `solution` and the `{solution}` blocks (MyST fences of backticks or
colons) from markdown cells, drops markdown cells left empty, adds an empty code cell after each
`{exercise}` for the answer, and checks that each notebook is still valid (nbformat.validate).
Where `grading/<chapter>/<label>.py` has public checks (otter test cases not marked hidden), it
adds a "check my answer" cell after the answer cell and writes those checks, without the hidden
cases, to `checks/<chapter>/` beside the notebooks (tools/grade.py grades with all of them).
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "grading"
SOLUTION_TAG = "solution"
# An opening fence of a solution directive: ```{solution} or :::{solution} (3 or more marks).
_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}")
# The label of an exercise: the `:label:` option right after an {exercise} opening line.
_LABEL = re.compile(r"^(?:`{3,}|:{3,})\{exercise\}[^\n]*\n:label:\s*(\S+)", re.MULTILINE)


def strip_solution_blocks(markdown: str) -> str:
    """Remove every {solution} directive block (opening fence to its closing fence) from Markdown."""
    kept, closing = [], None
    for line in markdown.splitlines(keepends=True):
        if closing is None:
            match = _OPEN.match(line.lstrip())
            if match:
                closing = match["fence"]
                continue
            kept.append(line)
        elif line.strip() == closing:
            closing = None
    if closing is not None:
        raise ValueError(f"unclosed {{solution}} block (no closing {closing!r})")
    return re.sub(r"\n{3,}", "\n\n", "".join(kept)).strip("\n")


def is_solution_cell(cell: nbformat.NotebookNode) -> bool:
    """Return True for a code cell tagged `solution`."""
    return cell.cell_type == "code" and SOLUTION_TAG in cell.metadata.get("tags", [])


def _is_test_case(decorator: ast.expr, hidden: bool) -> bool:
    """Return True for an otter `@test_case(...)` decorator with that `hidden` setting."""
    if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "test_case"):
        return False
    flags = [k.value for k in decorator.keywords if k.arg == "hidden"]
    return bool(flags and isinstance(flags[0], ast.Constant) and flags[0].value) == hidden


def public_checks(source: str) -> str | None:
    """Return a check file without its hidden test cases; None when no public case is left."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    cases = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if not any(_is_test_case(d, False) for node in cases for d in node.decorator_list):
        return None
    for node in reversed(cases):
        if any(_is_test_case(d, True) for d in node.decorator_list):
            start = min(d.lineno for d in node.decorator_list) - 1
            del lines[start:node.end_lineno]
    return re.sub(r"\n{3,}", "\n\n\n", "".join(lines))


def check_cell(stem: str, label: str) -> nbformat.NotebookNode:
    """Return the cell that runs an exercise's public checks with otter ("check my answer")."""
    return nbformat.v4.new_code_cell(
        f"# Check my answer: the public checks of exercise {label} (your instructor runs more)\n"
        "import os\n\nimport otter\n\n"
        f"CHECKS = \"checks/{stem}\"  # beside this notebook in the student edition\n"
        "grader = otter.Notebook(tests_dir=CHECKS) if os.path.isdir(CHECKS) else None\n"
        "if grader is None:\n"
        "    print(f\"No {CHECKS}/ folder here: open the notebook from the student edition.\")\n"
        f"grader.check(\"{label}\") if grader else None")


def checked_labels(stem: str, checks_dir: Path = CHECKS) -> dict[str, str]:
    """Map each exercise label of a chapter that has public checks to those checks' source."""
    found = {}
    for path in sorted((checks_dir / stem).glob("*.py")):
        public = public_checks(path.read_text())
        if public is not None:
            found[path.stem] = public
    return found


def check_folder(label: str, checks_dir: Path = CHECKS) -> str | None:
    """Return the chapter folder whose public checks cover exercise `label`, or None."""
    for path in sorted(checks_dir.glob(f"*/{label}.py")):
        if public_checks(path.read_text()) is not None:
            return path.parent.name
    return None


def answer_cells(markdown: str, checks_dir: Path | None = None) -> list[nbformat.NotebookNode]:
    """Return an empty code cell for each {exercise} label in a markdown cell, for the answer.

    With `checks_dir`, a label that has public checks there also gets a "check my answer" cell.
    """
    cells = []
    for label in _LABEL.findall(markdown):
        cells.append(nbformat.v4.new_code_cell(f"# Your answer to exercise {label}\n"))
        folder = check_folder(label, checks_dir) if checks_dir else None
        if folder:
            cells.append(check_cell(folder, label))
    return cells


def student_notebook(nb: nbformat.NotebookNode,
                     checks_dir: Path | None = CHECKS) -> nbformat.NotebookNode:
    """Return a copy of `nb` without solution cells and {solution} blocks, with answer cells.

    Exercises with public checks in `checks_dir/<chapter>/<label>.py` get a "check my answer" cell
    (`checks_dir=None`: none).
    """
    student = nbformat.from_dict(nb)
    cells = []
    for cell in student.cells:
        if is_solution_cell(cell):
            continue
        if cell.cell_type == "markdown":
            cell.source = strip_solution_blocks(cell.source)
            if not cell.source.strip():
                continue
            cells += [cell, *answer_cells(cell.source, checks_dir)]
            continue
        cells.append(cell)
    student.cells = cells
    nbformat.validate(student)
    return student


def chapter_paths() -> list[Path]:
    """Return the chapter notebooks, in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def write_student_edition(out: Path) -> list[Path]:
    """Write the student notebooks into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in chapter_paths():
        checks = checked_labels(path.stem)
        nb = student_notebook(nbformat.read(path, as_version=4))
        for label, source in checks.items():
            (out / "checks" / path.stem).mkdir(parents=True, exist_ok=True)
            (out / "checks" / path.stem / f"{label}.py").write_text(source)
        target = out / path.name
        nbformat.write(nb, target)
        written.append(target)
    (out / "README.md").write_text(
        "# torchbook, student edition\n\nThe chapter notebooks with the exercises and without "
        "their solutions. Open them in JupyterLab or on Colab (the first cell sets Colab up).\n"
        "After an exercise, the cell \"Check my answer\" runs its public checks from `checks/` "
        "(with otter-grader, `pip install otter-grader`); keep `checks/` beside the notebooks.\n")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    for path in write_student_edition(args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
