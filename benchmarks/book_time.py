"""Time every chapter notebook in fast mode (the committed sample) and on the full data.

Each notebook runs in its own `jupyter nbconvert --execute` subprocess, from the `notebooks/` folder,
with BOOK_FAST=1 (fast) or BOOK_FAST=0 (full). We record its wall time and the peak resident memory
of the process tree (nbconvert, the kernel and any DataLoader workers), sampled every 0.1 s with
psutil. The book's budgets: every chapter in fast mode in at most 60 s, every chapter on full data in
at most 5 minutes and the whole book in at most 20 minutes, peak memory under 4 GB.

Usage (from the repository root; `make booktime` runs the first line):

    python benchmarks/book_time.py                                  # every chapter, both modes
    python benchmarks/book_time.py --fast-only --notebooks 00_setup --json /tmp/book_time.json
    python benchmarks/book_time.py --full-only --notebooks 08 --update   # re-time one chapter
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from common import REPO, cpu_model, load_average_span, write_json_atomically

NOTEBOOKS = REPO / "notebooks"
LIMITS = {"fast_chapter_seconds": 60, "full_chapter_seconds": 300, "full_book_seconds": 1200,
          "peak_rss_mb": 4096}


def find_notebooks(names: list[str] | None, folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks (NN_name.ipynb) in `folder`, or those named (stem, file name or path)."""
    chapters = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return chapters
    picked = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            picked.append(path.resolve())
            continue
        matches = [nb for nb in chapters if nb.stem == path.stem or nb.stem.startswith(f"{path.stem}_")]
        if not matches:
            raise SystemExit(f"no notebook {name!r} in {folder.name}/; choose from: "
                             + ", ".join(nb.stem for nb in chapters))
        picked.extend(matches)
    return picked


def tree_rss_mb(process: psutil.Process) -> tuple[float, float]:
    """Resident memory (MiB) of a process and all its descendants: their sum and the largest one."""
    sizes = []
    for proc in [process, *process.children(recursive=True)]:
        try:
            sizes.append(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sum(sizes) / 2**20, max(sizes, default=0) / 2**20


def execute_command(notebook: Path, output_dir: Path) -> list[str]:
    """The nbconvert command that executes `notebook` into `output_dir` (cells may run 30 minutes)."""
    return [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
            "--ExecutePreprocessor.timeout=1800", "--output-dir", str(output_dir), str(notebook)]


def time_notebook(notebook: Path, fast: bool, poll_seconds: float = 0.1) -> dict:
    """Execute one notebook in a subprocess; return its wall time, peak memory and outcome."""
    env = {**os.environ, "BOOK_FAST": "1" if fast else "0"}
    with tempfile.TemporaryDirectory(prefix="book_time_") as output_dir:
        start = time.perf_counter()
        proc = subprocess.Popen(execute_command(notebook, Path(output_dir)), cwd=notebook.parent, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watched = psutil.Process(proc.pid)
        peak_tree = peak_process = 0.0
        while proc.poll() is None:
            tree, largest = tree_rss_mb(watched)
            peak_tree, peak_process = max(peak_tree, tree), max(peak_process, largest)
            time.sleep(poll_seconds)
        seconds = time.perf_counter() - start
        _, stderr = proc.communicate()
    result = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_tree, 1),
              "peak_process_rss_mb": round(peak_process, 1), "ok": proc.returncode == 0}
    if proc.returncode != 0:
        result["error"] = "\n".join(stderr.strip().splitlines()[-5:])
    limit = LIMITS["fast_chapter_seconds" if fast else "full_chapter_seconds"]
    result["within_limits"] = result["ok"] and seconds <= limit and peak_tree <= LIMITS["peak_rss_mb"]
    return result


def summarise(notebooks: dict[str, dict]) -> dict:
    """Total seconds per mode and whether every run met the book's budgets."""
    totals = {}
    for mode in ("fast", "full"):
        runs = [runs[mode] for runs in notebooks.values() if mode in runs]
        if runs:
            totals[f"{mode}_seconds"] = round(sum(run["seconds"] for run in runs), 2)
            totals[f"{mode}_peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    every_run = [run for runs in notebooks.values() for run in runs.values()]
    within = all(run["within_limits"] for run in every_run)
    if "full_seconds" in totals:
        within = within and totals["full_seconds"] <= LIMITS["full_book_seconds"]
    return {"totals": totals, "all_within_limits": within}


def format_table(notebooks: dict[str, dict]) -> str:
    """The timings as a small text table."""
    lines = [f"{'notebook':<28} {'mode':<5} {'seconds':>8} {'peak MB':>8}  ok"]
    for name, runs in notebooks.items():
        for mode, run in runs.items():
            flag = "yes" if run["within_limits"] else ("FAILED" if not run["ok"] else "over budget")
            lines.append(f"{name:<28} {mode:<5} {run['seconds']:>8.1f} {run['peak_rss_mb']:>8.0f}  {flag}")
    return "\n".join(lines)



def merge_runs(earlier: dict[str, dict], now: dict[str, dict]) -> dict[str, dict]:
    """The runs of `earlier` with those timed `now` put in their place, in chapter order."""
    merged = {name: dict(runs) for name, runs in earlier.items()}
    for name, runs in now.items():
        merged.setdefault(name, {}).update(runs)
    return dict(sorted(merged.items()))


def earlier_commands(earlier: dict) -> list[str]:
    """The commands (with dates) that timed the runs kept from an earlier JSON (--update)."""
    if not earlier:
        return []
    return [*earlier.get("earlier_commands", []), f"{earlier['command']} ({earlier['date']})"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "book_time.json",
                        help="where to write the results (default benchmarks/results/book_time.json)")
    parser.add_argument("--notebooks", nargs="+", default=None,
                        help="notebooks to time, e.g. 00_setup 03 (default: every chapter)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--fast-only", action="store_true", help="only fast mode (BOOK_FAST=1)")
    modes.add_argument("--full-only", action="store_true", help="only the full data")
    parser.add_argument("--update", action="store_true",
                        help="keep the other runs already in --json; replace only those timed now")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Time the notebooks, print a table, write the JSON; exit status 1 if any run failed."""
    args = parse_args(argv)
    modes = ["fast"] * (not args.full_only) + ["full"] * (not args.fast_only)
    notebooks: dict[str, dict] = {}
    load_before = os.getloadavg()  # a busy machine makes every chapter slower: record how busy
    earlier = json.loads(args.json.read_text()) if args.update and args.json.is_file() else {}
    for notebook in find_notebooks(args.notebooks):
        for mode in modes:
            load = os.getloadavg()[0]
            run = time_notebook(notebook, fast=(mode == "fast"))
            run.update(date=dt.datetime.now().isoformat(timespec="seconds"),
                       load_average_at_start=round(load, 2))
            notebooks.setdefault(notebook.stem, {})[mode] = run
            print(f"{notebook.stem} {mode}: {run['seconds']:.1f} s, {run['peak_rss_mb']:.0f} MB"
                  + ("" if run["ok"] else " FAILED"), flush=True)
    words = ["python", "benchmarks/book_time.py", *(sys.argv[1:] if argv is None else argv)]
    timed_now = notebooks
    notebooks = merge_runs(earlier.get("notebooks", {}), notebooks)
    payload = {"command": shlex.join(words),
               "earlier_commands": earlier_commands(earlier), "date": dt.datetime.now().isoformat(timespec="seconds"),
               "python": platform.python_version(), "torch": importlib.metadata.version("torch"),
               "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
               "load_average": load_average_span(load_before),
               "limits": LIMITS, "notebooks": notebooks,
               **summarise(notebooks)}
    print(format_table(notebooks))
    print(f"totals: {payload['totals']}, all within limits: {payload['all_within_limits']}")
    write_json_atomically(args.json, payload)
    return 0 if all(run["ok"] for runs in timed_now.values() for run in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
