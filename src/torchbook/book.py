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
        f"Executed with torchbook {torchbook.__version__}, torch {torch.__version__}, on {today} "
        f"({get_device().type}, {data_mode()}, {elapsed_seconds():.0f} s)."
    )
