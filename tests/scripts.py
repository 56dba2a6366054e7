"""Import the repository's command-line scripts (tools/, benchmarks/) as modules for testing, and
check how the package's commands report bad input."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def import_script(folder: str, name: str) -> ModuleType:
    """Import <folder>/<name>.py as `python <folder>/<name>.py` would see it, keeping os.environ."""
    if str(REPO / folder) not in sys.path:
        sys.path.insert(0, str(REPO / folder))  # scripts import their neighbours (benchmarks/common.py)
    before = dict(os.environ)
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.environ.clear()
    os.environ.update(before)
    return module


def expect_input_error(code: int, capsys, *words: str) -> None:
    """Exit code 2 and one line on stderr that starts with 'error:' and names the problem."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
