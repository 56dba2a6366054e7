"""Lines the executed book prints about itself: versions, device, data and run time."""
from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

import torch
import torchvision

import torchbook
from torchbook.device import get_device
from torchbook.settings import fast_mode, repo_root

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


# Measured run times: benchmarks/book_time.py writes notebooks -> stem -> mode -> run, where mode is
# "fast" or "full" (a 2-core CPU) or "gpu", and a run is {"seconds": ..., "ok": ...}.
MODES = ("fast", "full", "gpu")


def read_book_times(path: str | Path | None = None) -> dict:
    """Return book_time.json's per-chapter runs keyed by notebook stem ({} if not measured)."""
    if path is None:
        root = repo_root()
        if root is None:
            return {}
        path = root / "benchmarks" / "results" / "book_time.json"
    path = Path(path)
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get("notebooks", {})


def chapter_seconds(runs: dict) -> dict[str, float | None]:
    """Return mode -> seconds (None when not measured or when the run failed) for one chapter."""
    return {mode: float(runs[mode]["seconds"]) if runs.get(mode, {}).get("ok") else None
            for mode in MODES}


def format_duration(seconds: float) -> str:
    """Return '42 s' under 90 seconds, else minutes with one decimal."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def chapter_times(chapter_stem: str) -> str:
    """Return one line with the chapter's measured run times (2-core CPU, fast/full; GPU)."""
    seconds = chapter_seconds(read_book_times().get(chapter_stem, {}))
    parts = []
    if seconds["full"] is not None:
        parts.append(f"{format_duration(seconds['full'])} on the full data")
    if seconds["fast"] is not None:
        parts.append(f"{format_duration(seconds['fast'])} in fast mode")
    if not parts:
        return "Run time: not measured yet (make booktime measures every chapter)."
    line = "Run time on a 2-core CPU: " + ", ".join(parts)
    if seconds["gpu"] is not None:
        line += f"; {format_duration(seconds['gpu'])} on a GPU (full data)"
    return line + " (measured by make booktime, with the trained models already saved)."
