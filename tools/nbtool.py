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
import tempfile
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


def ipc_kernel_manager(folder: Path) -> "KernelManager":
    """A kernel talking over Unix sockets in `folder`, not TCP ports.

    jupyter_client picks free TCP ports by binding and releasing them, so kernels started at the
    same moment (two chapters at a time, other builds) can pick the same port and one run then
    waits forever for a reply; sockets in a folder of their own cannot collide.
    """
    from jupyter_client.manager import KernelManager

    return KernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))


def merge_streams(outputs: list) -> list:
    """A cell's outputs with all its stdout (and all its stderr) text in one output each.

    Stored this way, the book renders every printed line once. (myst-nb's own merging,
    `nb_merge_streams`, edits the first output in place and can run twice on a cell, which
    printed the last lines of some cells twice; the book turns it off.)
    """
    merged, first = [], {}
    for output in outputs:
        if output.get("output_type") != "stream":
            merged.append(output)
        elif output["name"] in first:
            first[output["name"]]["text"] += output["text"]
        else:
            first[output["name"]] = nbformat.from_dict({**output, "text": output["text"]})
            merged.append(first[output["name"]])
    return merged


def execute_notebook(path: Path, timeout: int = 600, cwd: Path | None = None,
                     fast: bool = True) -> nbformat.NotebookNode:
    """Run the notebook (fast mode unless `fast` is False) from `cwd` (default: its folder);
    raise on a cell error. Each cell's streams are merged (`merge_streams`)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["BOOK_FAST"] = "1" if fast else "0"
    with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
        km = ipc_kernel_manager(Path(sockets))
        client = NotebookClient(nb, km=km, timeout=timeout,
                                resources={"metadata": {"path": str(cwd or path.parent)}})
        try:
            client.execute()
        finally:
            if km.has_kernel:  # a kernel manager passed in is not shut down by nbclient
                km.shutdown_kernel(now=False)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
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
