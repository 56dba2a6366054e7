"""Lines the executed book prints about itself: versions, device, data and run time."""
from __future__ import annotations

import datetime as _dt
import time

import torch
import torchvision

import torchbook
from torchbook.device import get_device
from torchbook.settings import fast_mode

_STARTED = time.perf_counter()


def data_mode() -> str:
    """Name the data this run uses: 'full data' or 'fast mode (sample)'."""
    return "fast mode (committed sample)" if fast_mode() else "full data"


def versions_line() -> str:
    """Return one line with the torchbook, torch and torchvision versions and the device."""
    return (
        f"torchbook {torchbook.__version__}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, device {get_device().type}"
    )


def elapsed_seconds() -> float:
    """Seconds since torchbook was first imported in this kernel (the chapter's run time)."""
    return time.perf_counter() - _STARTED


def chapter_footer() -> str:
    """Return the closing line of a chapter: versions, date, device, data and run time."""
    today = _dt.date.today().isoformat()
    return (
        f"Executed with torchbook {torchbook.__version__}, torch {torch.__version__} "
        f"(torchvision {torchvision.__version__}), on {today} "
        f"({get_device().type}, {data_mode()}, {elapsed_seconds():.0f} s)."
    )


# Measured run times (added for the book build; the numbers come from benchmarks/book_time.py).
_TIME_KEYS = {
    "fast": ("fast_seconds", "fast_s", "fast"),
    "full": ("full_seconds", "full_s", "full", "cpu_seconds"),
    "gpu": ("gpu_seconds", "gpu_s", "gpu", "full_gpu_seconds"),
}


def read_book_times(path: str | None = None) -> dict:
    """Return book_time.json's per-chapter entries keyed by notebook stem ({} if not measured)."""
    import json
    from pathlib import Path

    from torchbook.settings import repo_root

    if path is None:
        root = repo_root()
        if root is None:
            return {}
        path = root / "benchmarks" / "results" / "book_time.json"
    path = Path(path)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    chapters = (data.get("notebooks") or data.get("chapters") or {}) if isinstance(data, dict) else {}
    if isinstance(chapters, list):
        chapters = {c.get("chapter", c.get("stem", c.get("notebook", ""))): c for c in chapters}
    return {Path(str(k)).stem: v for k, v in chapters.items() if isinstance(v, dict)}


def _seconds(value: object) -> float | None:
    """Return a number of seconds from a float or a {'seconds': ...} run (None if it failed)."""
    if isinstance(value, dict):
        if value.get("ok") is False:
            return None
        value = value.get("seconds", value.get("wall_seconds"))
    return float(value) if isinstance(value, (int, float)) else None


def chapter_seconds(entry: dict) -> dict:
    """Return {'fast', 'full', 'gpu'} -> seconds (or None) from one chapter's book_time entry."""
    found = {}
    for kind, keys in _TIME_KEYS.items():
        values = [_seconds(entry[k]) for k in keys if k in entry]
        found[kind] = next((v for v in values if v is not None), None)
    return found


def _duration(seconds: float) -> str:
    """Return '42 s' under 90 seconds, else minutes with one decimal."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def chapter_times(chapter_stem: str) -> str:
    """Return one line with the chapter's measured run times (2-core CPU, fast/full; GPU)."""
    seconds = chapter_seconds(read_book_times().get(chapter_stem, {}))
    parts = []
    if seconds["full"] is not None:
        parts.append(f"{_duration(seconds['full'])} on the full data")
    if seconds["fast"] is not None:
        parts.append(f"{_duration(seconds['fast'])} in fast mode")
    if not parts:
        return "Run time: not measured yet (make booktime measures every chapter)."
    line = "Run time on a 2-core CPU: " + ", ".join(parts)
    if seconds["gpu"] is not None:
        line += f"; {_duration(seconds['gpu'])} on a GPU (full data)"
    return line + " (measured by make booktime)."
