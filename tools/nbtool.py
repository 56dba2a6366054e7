"""Execute chapter notebooks in fast mode and store them clean.

Usage:
    python tools/nbtool.py execute notebooks/01_data_pipelines.ipynb [...]
    python tools/nbtool.py strip notebooks/*.ipynb

`execute` runs a notebook top to bottom with BOOK_FAST=1 (from the notebooks/ folder, like the
book build and nbval), fails on any error, then stores it with outputs kept only on cells marked
`# NBVAL_CHECK_OUTPUT` (the outputs nbval compares). Every other output is stripped: the rendered
book shows freshly executed outputs, and the committed notebooks stay small and free of machine
paths. `strip` does only the storing step.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
KEEP_METADATA = {"kernelspec", "language_info", "colab", "accelerator"}


def strip_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop outputs except on checked cells, and drop execution noise from metadata."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_METADATA}
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if CHECK_MARK in cell.source:
            cell.execution_count = 1
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = 1
        else:
            cell.outputs = []
            cell.execution_count = None
    return nb


def execute_notebook(path: Path, timeout: int = 600,
                     cwd: Path | None = None) -> nbformat.NotebookNode:
    """Run the notebook in fast mode from `cwd` (default: its folder); raise on a cell error."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["BOOK_FAST"] = "1"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or path.parent)}})
    client.execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise RuntimeError(f"{path}: a cell raised {out.get('ename')}")
            if out.get("name") == "stderr" and CHECK_MARK in cell.source:
                raise RuntimeError(f"{path}: a checked cell wrote to stderr: {out.get('text')!r}")
    return nb


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["execute", "strip"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        nb = execute_notebook(path) if args.action == "execute" else nbformat.read(path, as_version=4)
        nbformat.write(strip_notebook(nb), path)
        print(f"{args.action}d {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
