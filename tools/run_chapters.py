"""Execute every chapter once in fast mode, and its student edition, in parallel; record the runs.

Usage:
    python tools/run_chapters.py                      # every chapter, 2 at a time
    python tools/run_chapters.py --jobs 1 03_training_loops --out /tmp/executed
    python tools/run_chapters.py --no-student       # the chapters only

`make test` runs this first, then builds the fast book from OUT/notebooks/ without executing again
(tools/build_book.py --executed) and runs pytest, whose notebook tests (tests/test_notebooks.py,
tests/test_student.py) read these runs instead of executing the chapters again:

- OUT/notebooks/NAME.ipynb: the chapter executed top to bottom (BOOK_FAST=1, from notebooks/, like
  nbval and the book). A cell that raises fails the run. Its `# NBVAL_CHECK_OUTPUT` cells are then
  compared with the stored ones, as `pytest --nbval-lax` compares them (stderr included).
- OUT/student/NAME.ipynb: the student edition (tools/make_student.py) executed the same way, for
  chapters with solution cells (without solutions it runs different code); a chapter without any
  is its own student edition, and its chapter run stands for both.
- OUT/report.json: for each run the source notebook's SHA-256 (so a test can tell a stale run),
  seconds, and the error if it failed.

Each notebook runs in its own process (its own kernel) with a time limit for the whole notebook;
student editions save their models in their own data folder, so that two runs never write the
same file. The exit status is 1 if any run failed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BOOK_TIME_JSON = ROOT / "benchmarks" / "results" / "book_time.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_student import is_solution_cell, student_notebook  # noqa: E402
from nbtool import execute_notebook  # noqa: E402

KINDS = ("notebooks", "student")


def sha256(path: Path) -> str:
    """Return the SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chapter_paths(stems: list[str] | None = None) -> list[Path]:
    """Return the chapter notebooks, or those whose stem starts with one of `stems`."""
    chapters = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not stems:
        return chapters
    picked = [p for p in chapters if any(p.stem.startswith(s) for s in stems)]
    unknown = [s for s in stems if not any(p.stem.startswith(s) for p in chapters)]
    if unknown:
        raise SystemExit(f"no chapter {unknown} in notebooks/; choose from: "
                         + ", ".join(p.stem for p in chapters))
    return picked


def has_solutions(path: Path) -> bool:
    """Return True if the chapter has code cells tagged `solution`: its student edition differs."""
    return any(is_solution_cell(c) for c in nbformat.read(path, as_version=4).cells)


def fast_seconds(stem: str) -> float:
    """Return the chapter's measured fast-mode seconds from book_time.json, or 60 if unknown."""
    try:
        runs = json.loads(BOOK_TIME_JSON.read_text())["notebooks"]
        return float(runs[stem]["fast"]["seconds"])
    except (OSError, KeyError, TypeError, ValueError):
        return 60.0


def student_data_dir(out: Path) -> Path:
    """Return a data folder for student runs: links to data/'s entries, its own models/."""
    folder = out / "student-data"
    folder.mkdir(parents=True, exist_ok=True)
    for entry in (ROOT / "data").iterdir():
        link = folder / entry.name
        if entry.name != "models" and not link.exists():
            link.symlink_to(entry.resolve())
    return folder


# Chapters that start groups of processes (torchrun) and time them run alone, after the others:
# a notebook running beside them takes the cores their workers share, which distorts the
# throughput they print. (The launch that once hung beside other notebooks on torch 2.4 was a
# GIL deadlock at exit, more likely on a busy machine; torchbook.distributed.cleanup avoids it.)
RUN_ALONE = {"11_distributed_training"}


def plan_runs(chapters: list[Path], out: Path, students: bool = True) -> list[dict]:
    """Return the runs: every chapter, then the student editions that differ; slowest first."""
    runs = []
    for path in chapters:
        runs.append({"kind": "notebooks", "stem": path.stem, "source": path,
                     "sha256": sha256(path), "target": out / "notebooks" / path.name, "env": {}})
    for path in chapters:
        if students and has_solutions(path):
            source = out / "student-src" / path.name
            source.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(student_notebook(nbformat.read(path, as_version=4)), source)
            runs.append({"kind": "student", "stem": path.stem, "source": source,
                         "sha256": sha256(path), "target": out / "student" / path.name,
                         "env": {"BOOK_DATA_DIR": str(student_data_dir(out))}})
    # Chapters before student editions, slowest first within each: the two slowest runs of
    # one chapter do not start together, and the last runs to start are short.
    return sorted(runs, key=lambda r: (r["kind"] == "student", -fast_seconds(r["stem"])))


def cell_seconds(nb: nbformat.NotebookNode) -> list[tuple[int, float, str]]:
    """(index, seconds, first line) of every executed code cell, from nbclient's timestamps."""
    import datetime as dt

    times = []
    for index, cell in enumerate(nb.cells):
        stamps = cell.metadata.get("execution", {})
        if cell.cell_type != "code" or "shell.execute_reply" not in stamps:
            continue
        start = stamps.get("iopub.execute_input") or stamps["shell.execute_reply.started"]
        seconds = (dt.datetime.fromisoformat(stamps["shell.execute_reply"].rstrip("Z"))
                   - dt.datetime.fromisoformat(start.rstrip("Z"))).total_seconds()
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        times.append((index, round(seconds, 1), first[:60]))
    return times


def slow_cells(target: Path, limit: float) -> list[dict]:
    """The cells of an executed notebook that ran longer than `limit` seconds, slowest first."""
    times = cell_seconds(nbformat.read(target, as_version=4))
    return [{"cell": index, "seconds": seconds, "source": first}
            for index, seconds, first in sorted(times, key=lambda t: -t[1]) if seconds > limit]


def run_one(run: dict, timeout: float, fast: bool = True, cell_limit: float = 120) -> dict:
    """Execute one notebook in a child process (own session) within `timeout` seconds."""
    run["target"].parent.mkdir(parents=True, exist_ok=True)
    run["target"].unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--execute-one", str(run["source"]), str(run["target"])]
    cmd += [] if fast else ["--full"]
    env = {**os.environ, "BOOK_FAST": "1" if fast else "0", **run["env"]}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        error = None if proc.returncode == 0 else last_lines(output)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel too: it is in the child's session
        proc.communicate()
        error = f"timed out after {timeout:.0f} s (raise --timeout if the machine is busy)"
    seconds = round(time.perf_counter() - started, 1)
    slow = slow_cells(run["target"], cell_limit) if error is None else []
    return {"kind": run["kind"], "stem": run["stem"], "sha256": run["sha256"],
            "seconds": seconds, "ok": error is None, "error": error, "slow_cells": slow}


def last_lines(text: str, n: int = 30) -> str:
    """Return the last `n` lines of a run's output (the traceback of a failed cell)."""
    return "\n".join(text.strip().splitlines()[-n:])


def run_all(runs: list[dict], jobs: int, timeout: float, fast: bool = True,
            cell_limit: float = 120) -> list[dict]:
    """Execute the runs, `jobs` at a time; print each result as it comes."""
    results = []
    together = [run for run in runs if run["stem"] not in RUN_ALONE]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, run, timeout, fast, cell_limit) for run in together]
        for future in concurrent.futures.as_completed(futures):
            results.append(report_result(future.result(), cell_limit))
    for run in runs:  # then the chapters that must run alone, one at a time
        if run["stem"] in RUN_ALONE:
            results.append(report_result(run_one(run, timeout, fast, cell_limit), cell_limit))
    return results


def report_result(result: dict, cell_limit: float = 120) -> dict:
    """Print one run's result line (its error, its cells over the limit); return the result."""
    status = "ok" if result["ok"] else "FAILED"
    print(f"{result['kind']:<9} {result['stem']:<28} {result['seconds']:>6.1f} s  {status}",
          flush=True)
    if not result["ok"]:
        print("    " + result["error"].replace("\n", "\n    "), flush=True)
    for cell in result.get("slow_cells", []):
        print(f"    WARNING: cell {cell['cell']} ran {cell['seconds']:.0f} s, over the "
              f"{cell_limit:.0f} s a cell may take with the models saved: {cell['source']!r}",
              flush=True)
    return result


def write_report(out: Path, results: list[dict], jobs: int, seconds: float) -> Path:
    """Write OUT/report.json: the runs by kind and chapter stem, and the whole wall time."""
    report = {"jobs": jobs, "seconds": round(seconds, 1), "runs": {kind: {} for kind in KINDS}}
    for result in sorted(results, key=lambda r: r["stem"]):
        report["runs"][result["kind"]][result["stem"]] = {
            k: result[k] for k in ("sha256", "seconds", "ok", "error", "slow_cells")}
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def execute_one(source: Path, target: Path, fast: bool = True) -> int:
    """Child process: execute `source` from notebooks/ and write the executed copy to `target`."""
    timeout = int(os.environ.get("BOOK_CELL_TIMEOUT", "600"))  # a guard against hangs
    nbformat.write(execute_notebook(source, timeout=timeout, cwd=NOTEBOOKS, fast=fast), target)
    return 0


# What `pytest --nbval-lax` leaves out of a comparison (nbval's skip_compare, without --nbdime).
SKIP_COMPARE = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}


def flatten_outputs(outputs: list) -> dict[str, list]:
    """Group a cell's outputs by field as nbval does: streams by name, data by MIME type."""
    from nbval.plugin import coalesce_streams, transform_streams_for_comparison

    copies = [nbformat.from_dict(json.loads(json.dumps(o))) for o in outputs]
    flat: dict[str, list] = {}
    for output in transform_streams_for_comparison(coalesce_streams(copies)):
        for key, value in output.items():
            if key == "data":
                for mime, data in value.items():
                    if mime not in SKIP_COMPARE:
                        flat.setdefault(mime, []).append(data)
            elif key not in SKIP_COMPARE:
                flat.setdefault(key, []).append(value)
    return flat


def nbval_options(cell: nbformat.NotebookNode) -> dict[str, bool]:
    """Return nbval's options for a cell, from its tags and its comment markers (comments win)."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    options = dict(find_metadata_tags(cell.metadata))
    options.update(find_comment_markers(cell.source))
    return options


def checked_output_problems(stored: nbformat.NotebookNode,
                            executed: nbformat.NotebookNode) -> list[str]:
    """Compare a run's `# NBVAL_CHECK_OUTPUT` cells with the stored notebook's, as nbval-lax."""
    stored_code = [c for c in stored.cells if c.cell_type == "code"]
    executed_code = [c for c in executed.cells if c.cell_type == "code"]
    if [c.source for c in stored_code] != [c.source for c in executed_code]:
        return ["the run executed other code than the stored notebook has (a stale run?)"]
    problems = []
    for number, (ref, run) in enumerate(zip(stored_code, executed_code)):
        options = nbval_options(ref)
        unsupported = sorted({"skip", "check_exception"} & {k for k, v in options.items() if v})
        if unsupported:
            problems.append(f"cell {number}: nbval options {unsupported} are not supported here "
                            "(tools/run_chapters.py compares outputs only)")
        if not options.get("check", False):  # --nbval-lax: only marked cells are compared
            continue
        if ref.execution_count is None:
            if ref.outputs:
                problems.append(f"cell {number}: unrun reference cell has outputs")
            continue
        want, got = flatten_outputs(ref.outputs), flatten_outputs(run.outputs)
        if want != got:
            problems.append(f"cell {number} ({ref.source.splitlines()[0]!r}...) outputs differ:\n"
                            f"  stored:   {want}\n  executed: {got}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter stems or prefixes (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "executed")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("BOOK_JOBS", "2")),
                        help="notebooks executed at the same time (default $BOOK_JOBS or 2)")
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds one notebook may run in all (default 1200)")
    parser.add_argument("--no-student", action="store_true",
                        help="only the chapters, not their student editions (make test-oldest)")
    parser.add_argument("--full", action="store_true",
                        help="the full data, not fast mode (make book; students never)")
    parser.add_argument("--cell-limit", type=float, default=120,
                        help="warn about cells that ran longer (default 120 s)")
    parser.add_argument("--execute-one", nargs=2, type=Path, metavar=("SOURCE", "TARGET"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute_one:
        return execute_one(*args.execute_one, fast=not args.full)
    out = args.out.resolve()
    started = time.perf_counter()
    students = not (args.no_student or args.full)
    runs = plan_runs(chapter_paths(args.chapters), out, students=students)
    if args.full:
        runs.sort(key=lambda run: run["stem"])  # in the book's order, as a reader would
    mode = "on the full data" if args.full else "in fast mode"
    print(f"executing {len(runs)} notebooks {mode}, {args.jobs} at a time", flush=True)
    results = run_all(runs, args.jobs, args.timeout, fast=not args.full,
                      cell_limit=args.cell_limit)
    seconds = time.perf_counter() - started
    report = write_report(out, results, args.jobs, seconds)
    failed = [r for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)} of {len(results)} notebooks ran in {seconds:.0f} s; "
          f"report: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
