"""Print the path of the oldest Python on this machine that torchbook supports (for .venv-oldest).

Usage:
    python3 tools/oldest_python.py    # e.g. /root/.pyenv/versions/3.10.13/bin/python3

Looks on PATH (python3.N) and in pyenv's versions folder (`pyenv root`, else ~/.pyenv) for every
Python at or above pyproject.toml's `requires-python` floor, and prints the oldest one. Exits 1
with a message saying what to install when there is none; warns when the oldest found is above
the floor (then the floor itself is not tested).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_floor(pyproject: Path = ROOT / "pyproject.toml") -> tuple[int, int]:
    """Return the (major, minor) of pyproject.toml's `requires-python = ">=X.Y"`."""
    match = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)', pyproject.read_text())
    if not match:
        raise SystemExit(f"no requires-python = \">=X.Y\" in {pyproject}")
    return int(match[1]), int(match[2])


def pyenv_root() -> Path:
    """Return pyenv's root folder: `pyenv root`, else $PYENV_ROOT, else ~/.pyenv."""
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def candidates(floor: tuple[int, int]) -> list[Path]:
    """Return Python executables that may be at or above the floor: on PATH, then pyenv's."""
    found = [shutil.which(f"python{floor[0]}.{minor}") for minor in range(floor[1], 30)]
    versions = pyenv_root() / "versions"
    if versions.is_dir():
        found += [str(p) for p in sorted(versions.glob(f"{floor[0]}.*/bin/python{floor[0]}"))]
    return [Path(p) for p in found if p]


def version_of(python: Path) -> tuple[int, int, int] | None:
    """Return the interpreter's (major, minor, micro), or None if it does not run."""
    try:
        out = subprocess.run([str(python), "-c", "import sys; print(*sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return tuple(int(p) for p in parts) if out.returncode == 0 and len(parts) == 3 else None


def oldest_supported(floor: tuple[int, int]) -> tuple[Path, tuple[int, int, int]] | None:
    """Return the oldest working Python at or above the floor, with its version, or None."""
    found = [(v, p) for p in candidates(floor) if (v := version_of(p)) and v[:2] >= floor]
    # pyenv's shims on PATH only forward to a version: prefer a real interpreter among equals.
    found.sort(key=lambda vp: (vp[0], "shims" in str(vp[1])))
    return (found[0][1], found[0][0]) if found else None


def main() -> int:
    """Print the oldest supported Python's path, or explain what is missing."""
    floor = python_floor()
    best = oldest_supported(floor)
    if best is None:
        print(f"ERROR: no Python >= {floor[0]}.{floor[1]} on PATH (python{floor[0]}.N) or in "
              f"{pyenv_root()}/versions. Install one, e.g. `pyenv install {floor[0]}.{floor[1]}`.",
              file=sys.stderr)
        return 1
    path, version = best
    if version[:2] > floor:
        print(f"WARNING: the oldest Python found is {'.'.join(map(str, version))}, above the "
              f"floor {floor[0]}.{floor[1]}: the floor itself is not tested.", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
