"""What every benchmark script shares: where the repository is, how results are written, and the
races' common pieces (memory, ratios, the data check, the baselines' plain training loop)."""
from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:  # torch is imported by the races themselves, after OMP_WAIT_POLICY is set
    import torch

REPO = Path(__file__).resolve().parents[1]


def write_json_atomically(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def display_path(path: Path) -> str:
    """`path` relative to the repository when inside it (no machine paths in the results)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def cpu_model() -> str:
    """The processor's model name (Linux /proc/cpuinfo, else platform.processor()), for every figure."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def load_average_span(start: tuple[float, float, float]) -> dict[str, list[float]]:
    """The load averages at the start (os.getloadavg() taken then) and now: how busy the run was."""
    return {"start": [round(x, 2) for x in start], "end": [round(x, 2) for x in os.getloadavg()]}


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator rounded, or None when the denominator is 0."""
    return round(numerator / denominator, 2) if denominator else None


def check_race_data(data: Path, name: str, folder: str) -> None:
    """Fail early, with what to do, if `data` is not an ImageFolder root with train/ and test/."""
    missing = [split for split in ("train", "test") if not (data / split).is_dir()]
    if missing:
        raise SystemExit(f"{data} has no {' or '.join(missing)}/ folder: pass --data DIR, a {name} "
                         f"ImageFolder root with train/ and test/ (run `make data` to prepare "
                         f"data/{folder})")


def train_plain(model: "torch.nn.Module", loader: Iterable, loss_fn: Callable,
                optimizer: "torch.optim.Optimizer", epochs: int, device: "torch.device") -> int:
    """A baseline's plain training loop over (images, targets) batches; return the images seen."""
    seen = 0
    for _ in range(epochs):
        model.train()
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
            seen += len(targets)
    return seen
