"""Shared check that the code a chapter teaches inline is the code torchbook ships."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def taught_definitions(chapter: str) -> dict[str, str]:
    """Map each top-level def/class in a chapter's code cells (not solutions) to its source."""
    found = {}
    for cell in nbformat.read(NOTEBOOKS / f"{chapter}.ipynb", as_version=4).cells:
        if cell.cell_type != "code" or "solution" in cell.metadata.get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics (the Colab cell)
            continue
        lines = cell.source.splitlines()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[node.name] = "\n".join(lines[start - 1:node.end_lineno])
    return found


def assert_taught_as_shipped(chapter: str, module: ModuleType, name: str) -> None:
    """Fail unless `chapter` defines `name` exactly as `module` does (decorators included)."""
    taught = taught_definitions(chapter)
    assert name in taught, f"{chapter} does not define {name}"
    assert taught[name].strip() == inspect.getsource(getattr(module, name)).strip()
