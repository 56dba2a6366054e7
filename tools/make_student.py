"""Write the student edition: every chapter notebook without its solutions, exercises kept.

Usage:
    python tools/make_student.py [--out _build/student]

Removes the code cells tagged `solution` and the `{solution}` blocks (MyST fences of backticks or
colons) from markdown cells, drops markdown cells left empty, adds an empty code cell after each
`{exercise}` for the answer, and checks that each notebook is still valid (nbformat.validate).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
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


def answer_cells(markdown: str) -> list[nbformat.NotebookNode]:
    """Return an empty code cell for each {exercise} label in a markdown cell, for the answer."""
    labels = _LABEL.findall(markdown)
    return [nbformat.v4.new_code_cell(f"# Your answer to exercise {label}\n") for label in labels]


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of `nb` without solution cells and {solution} blocks, with answer cells."""
    student = nbformat.from_dict(nb)
    cells = []
    for cell in student.cells:
        if is_solution_cell(cell):
            continue
        if cell.cell_type == "markdown":
            cell.source = strip_solution_blocks(cell.source)
            if not cell.source.strip():
                continue
            cells += [cell, *answer_cells(cell.source)]
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
        nb = student_notebook(nbformat.read(path, as_version=4))
        target = out / path.name
        nbformat.write(nb, target)
        written.append(target)
    (out / "README.md").write_text(
        "# torchbook, student edition\n\nThe chapter notebooks with the exercises and without "
        "their solutions. Open them in JupyterLab or on Colab (the first cell sets Colab up).\n")
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
