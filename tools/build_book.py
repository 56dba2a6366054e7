"""Build the executed book: prepare the data, write the build-info pages, run Jupyter Book strictly.

Usage:
    python tools/build_book.py                      # full data if it can be prepared, else fast mode
    BOOK_FAST=1 python tools/build_book.py          # fast mode (committed sample) on purpose
    python tools/build_book.py --fast --out _build/fast
    python tools/build_book.py --fast --executed _build/executed/notebooks --out _build/fast

Steps: prepare the data; train the book's models (`python -m torchbook.zoo`, `make models`:
skipped when saved, resumed when stopped); execute the chapters one at a time
(tools/run_chapters.py, printing each chapter's time as it ends and naming any cell over 120 s);
then build the book from the executed chapters, strictly (`-W -n --keep-going`: any Sphinx
warning, unresolved cross-reference or stderr in an output fails it). With `--executed DIR`
(what `make test` does after tools/run_chapters.py) the chapters are not executed again. The book
is built from a copy of its sources in _build/.src-NAME whose notebooks are the executed ones,
with `execute_notebooks: off`. Before building it
writes `book/_generated/` (git-ignored): the data and versions the book was built with, and the
chapter map, which the front page and the instructors' page include.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import nbformat
import yaml

from torchbook.settings import fast_mode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GENERATED = ROOT / "book" / "_generated"
BOOK_TIME_JSON = ROOT / "benchmarks" / "results" / "book_time.json"

# The book's plan: chapter number -> (part, working title, chapters it builds on).
# Titles of chapters that exist are read from the notebook; the others are working titles.
PARTS = ("Getting started", "Foundations", "Understanding a trained model", "Beyond cifar2",
         "Scaling out")
PLAN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "00": (PARTS[0], "Setting up", ()),
    "01": (PARTS[1], "Data pipelines", ("00",)),
    "02": (PARTS[1], "Models three ways", ("01",)),
    "03": (PARTS[1], "Training loops", ("01", "02")),
    "04": (PARTS[2], "Evaluating a classifier", ("03",)),
    "05": (PARTS[2], "Saving and loading models", ("03",)),
    "06": (PARTS[2], "Feature maps with hooks", ("02", "05")),
    "07": (PARTS[3], "A ResNet from scratch", ("03",)),
    "08": (PARTS[3], "Ten classes: CIFAR-10", ("03", "07")),
    "09": (PARTS[3], "How learning works", ("03",)),
    "10": (PARTS[3], "Reusing trained models", ("05", "08")),
    "11": (PARTS[4], "Training on several processes", ("05", "07")),
}


def chapter_notebooks() -> dict[str, Path]:
    """Map chapter number ('00'..'11') to its notebook in notebooks/."""
    return {p.name[:2]: p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def notebook_title(path: Path) -> str:
    """Return the `# Title` of a chapter notebook's first markdown cell."""
    nb = nbformat.read(path, as_version=4)
    for line in nb.cells[0].source.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Return every `file:` entry of the table of contents, in order."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [entry["file"] for entry in part.get("chapters", [])]
    return files


def toc_mismatch() -> list[str]:
    """Name the chapters that are in notebooks/ but not in _toc.yml, and the other way round."""
    in_toc = {f for f in toc_files() if f.startswith("notebooks/")}
    on_disk = {f"notebooks/{p.stem}" for p in chapter_notebooks().values()}
    return ([f"missing from _toc.yml: {f}" for f in sorted(on_disk - in_toc)]
            + [f"in _toc.yml but not in notebooks/: {f}" for f in sorted(in_toc - on_disk)])


def prepare_full_data() -> tuple[bool, str]:
    """Run data_scripts/prepare_data.py; return (succeeded, its last output lines)."""
    script = ROOT / "data_scripts" / "prepare_data.py"
    if not script.is_file():
        return False, f"{script.relative_to(ROOT)} does not exist yet"
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(proc.stdout, end="")
    tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
    return proc.returncode == 0, tail


def loud_banner(reason: str) -> str:
    """Return the banner printed when the full data cannot be had and the build falls back."""
    bar = "!" * 78
    return (f"\n{bar}\n!!  NO FULL DATA: building the FAST book on the committed sample "
            f"(BOOK_FAST=1).\n!!  Reason: {reason}\n!!  Numbers in this book are only rough. "
            f"For the real book, point at a CIFAR-10 copy:\n!!      CIFAR10_SOURCE=/path/to/cifar10 "
            f"make book\n{bar}\n")


def choose_data(fast: bool) -> tuple[bool, str]:
    """Return (build in fast mode?, why): fast if asked, or if the full data cannot be prepared."""
    if fast:
        return True, "fast mode requested (BOOK_FAST=1 or --fast)"
    ok, tail = prepare_full_data()
    if ok:
        return False, ""
    reason = tail.replace("\n", " / ") or "data preparation failed"
    print(loud_banner(reason), flush=True)
    return True, reason


def measured_times() -> dict[str, dict]:
    """Return benchmarks/results/book_time.json's per-chapter entries keyed by stem, or {}."""
    from torchbook.book import read_book_times
    return read_book_times(BOOK_TIME_JSON)


def format_seconds(seconds: float | None) -> str:
    """Return '42 s' or '3.5 min', or '-' when not measured."""
    from torchbook.book import format_duration
    return "-" if seconds is None else format_duration(seconds)


def chapter_rows() -> list[dict]:
    """Return one row per planned chapter: number, title, part, written, doc, depends, times."""
    from torchbook.book import chapter_seconds
    notebooks, times = chapter_notebooks(), measured_times()
    rows = []
    for number, (part, working_title, depends) in PLAN.items():
        path = notebooks.get(number)
        seconds = chapter_seconds(times.get(path.stem, {})) if path else {}
        rows.append({
            "number": number, "part": part, "written": path is not None,
            "title": notebook_title(path) if path else working_title,
            "doc": f"/notebooks/{path.stem}" if path else None,
            "depends": depends, **{f"{k}_seconds": v for k, v in seconds.items()},
        })
    return rows


def chapter_link(row: dict) -> str:
    """Return a MyST link to a written chapter, or its working title marked as coming."""
    if row["written"]:
        return f"{{doc}}`{row['number']} {row['title']} <{row['doc']}>`"
    return f"{row['number']} {row['title']} *(coming)*"


def run_time_note(row: dict) -> str:
    """Return ' (about 4.2 min on a 2-core CPU)' for a chapter measured on full data, else ''."""
    seconds = row.get("full_seconds")
    return f" (about {format_seconds(seconds)} on a 2-core CPU)" if seconds else ""


def chapter_map_md(rows: list[dict]) -> str:
    """Return the front page's chapter map: parts, then chapters, coming ones marked."""
    lines = []
    for part in PARTS:
        lines.append(f"**{part}**\n")
        lines += [f"- {chapter_link(r)}{run_time_note(r)}" for r in rows if r["part"] == part]
        lines.append("")
    return "\n".join(lines)


def instructor_table_md(rows: list[dict]) -> str:
    """Return the instructors' table: chapter, builds on, measured times (fast, full, GPU)."""
    lines = ["| chapter | builds on | fast mode (2-core CPU) | full data (2-core CPU) | full data (GPU) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        depends = ", ".join(r["depends"]) or "-"
        lines.append(f"| {chapter_link(r)} | {depends} | {format_seconds(r.get('fast_seconds'))} | "
                     f"{format_seconds(r.get('full_seconds'))} | {format_seconds(r.get('gpu_seconds'))} |")
    return "\n".join(lines) + "\n"


def build_info(fast: bool, reason: str) -> dict:
    """Collect what the book was built with: data, date, versions, machine."""
    import jupyter_book
    import torch
    import torchvision

    import torchbook
    return {
        "data": "fast mode: the committed sample (100 train / 20 test images per class)" if fast
                else "full data: CIFAR-10 (5,000 train / 1,000 test images per class)",
        "fast": fast, "fallback_reason": reason,
        "date": dt.date.today().isoformat(),
        "torchbook": torchbook.__version__, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "python": platform.python_version(),
        "jupyter_book": jupyter_book.__version__,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def build_info_md(info: dict, executed_before: bool = False) -> str:
    """Return the front page's 'how this book was built' paragraph."""
    note = ""
    if info["fast"]:
        note = ("\n\n:::{warning}\nThis copy of the book was built in **fast mode**, on the small "
                "sample of CIFAR-10 that ships with the book and with fewer epochs: its accuracies "
                "and curves are rough. `make book` with the full data "
                "(`CIFAR10_SOURCE=/path/to/cifar10 make book`) builds the real one.\n:::")
    return (f"This copy was built on {info['date']} from {info['data']}, with torchbook "
            f"{info['torchbook']}, torch {info['torch']}, torchvision {info['torchvision']}, "
            f"Python {info['python']} and Jupyter Book {info['jupyter_book']}, on {info['machine']} "
            f"({info['device']}). Every chapter was executed "
            f"{'for this build' if executed_before else 'during the build'}.{note}\n")


def write_generated(fast: bool, reason: str, executed_before: bool = False) -> dict:
    """Write book/_generated/: build info (JSON and Markdown), chapter map, instructors' table."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    info = build_info(fast, reason)
    rows = chapter_rows()
    (GENERATED / "build_info.json").write_text(json.dumps({**info, "chapters": rows}, indent=2))
    (GENERATED / "build_info.md").write_text(build_info_md(info, executed_before))
    (GENERATED / "chapter_map.md").write_text(chapter_map_md(rows))
    (GENERATED / "chapter_table.md").write_text(instructor_table_md(rows))
    return info


def stage_executed_sources(executed: Path, toc: Path, stage: Path) -> Path:
    """Copy the book's sources into `stage` with the executed chapters from `executed`.

    The copy's _config.yml is the book's with `execute_notebooks: off`; return its path.
    """
    chapters = [f for f in toc_files(toc) if f.startswith("notebooks/")]
    missing = [f for f in chapters if not (executed / f"{Path(f).name}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"not executed in {executed}: {missing} "
                                "(run tools/run_chapters.py first; did a chapter fail?)")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(ROOT / "book", stage / "book")
    (stage / "notebooks").mkdir()
    for chapter in chapters:
        shutil.copy2(executed / f"{Path(chapter).name}.ipynb", stage / f"{chapter}.ipynb")
    shutil.copy2(toc, stage / "_toc.yml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (stage / "_config.yml").write_text(
        "# Generated by tools/build_book.py --executed: the chapters were executed already.\n"
        + yaml.safe_dump(config, sort_keys=False))
    return stage / "_config.yml"


def model_report() -> dict:
    """Each book model's training seconds and bfloat16 choice, from what was saved with it."""
    from torchbook.checkpoints import CheckpointError, read_checkpoint
    from torchbook.zoo import BOOK_MODELS, training_seconds

    report = {}
    for name, model in BOOK_MODELS.items():
        try:
            meta = read_checkpoint(model.path())["meta"]
        except CheckpointError:
            continue
        report[name] = {"train_seconds": training_seconds(meta),
                        "epochs": meta["config"]["epochs"],
                        "bfloat16": meta.get("bfloat16_choice", {"enabled": False})}
    return report


def chapter_report(executed: Path) -> dict:
    """Each chapter's seconds and its cells over the limit, from tools/run_chapters.py's report."""
    runs = json.loads((executed / "report.json").read_text())["runs"]["notebooks"]
    return {stem: {"seconds": run["seconds"], "slow_cells": run.get("slow_cells", [])}
            for stem, run in runs.items()}


def write_build_report(path: Path, fast: bool, steps: dict, executed: Optional[Path],
                       load_start: tuple) -> dict:
    """Write what the build took, step by step, on which machine: models, chapters, book."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import cpu_model, load_average_span, write_json_atomically

    report = {"date": dt.datetime.now().isoformat(timespec="seconds"), "fast": fast,
              "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "environment": {key: os.environ[key] for key in KNOBS if key in os.environ},
              "seconds": round(sum(steps.values()), 1),
              "steps": {k: round(v, 1) for k, v in steps.items()},
              "load_average": load_average_span(load_start), "models": model_report(),
              "chapters": chapter_report(executed) if executed else {}}
    write_json_atomically(path, report)
    return report


# Settings that make a machine slower or faster, recorded with every build report.
KNOBS = ("ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "BOOK_DEVICE", "BOOK_JOBS")


def make_models() -> int:
    """Train (or resume, or skip) every model the chapters load: `make models`."""
    print("make models: the book's trained models (python -m torchbook.zoo)", flush=True)
    return subprocess.call([sys.executable, "-m", "torchbook.zoo"], cwd=ROOT)


def toc_chapters(toc: Path) -> list[str]:
    """The chapter stems the table of contents names."""
    return [Path(f).name for f in toc_files(toc) if f.startswith("notebooks/")]


def run_chapters(out: Path, fast: bool, chapters: list[str]) -> int:
    """Execute the chapters one at a time into `out` (tools/run_chapters.py), printing each
    chapter's time as it ends and any cell over the 120 s a cell may take with the models saved."""
    cmd = [sys.executable, str(ROOT / "tools" / "run_chapters.py"), "--no-student", "--jobs",
           os.environ.get("BOOK_JOBS", "1"), "--timeout", "7200", "--out", str(out), *chapters]
    return subprocess.call(cmd + ([] if fast else ["--full"]), cwd=ROOT)


def timed(steps: dict, name: str, step: Callable[[], int]) -> int:
    """Run one step of the build; add its seconds to `steps[name]`; return its exit code."""
    start = time.perf_counter()
    try:
        return step()
    finally:
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - start


def run_jupyter_book(out: Path, toc: Path, source: Path = ROOT) -> int:
    """Run `jupyter-book build` on `source` strictly, put the HTML in `out`; return its exit code."""
    default = ROOT / "_build" / "html"
    work = ROOT if out == default else ROOT / "_build" / f".work-{out.name}"
    shutil.rmtree(out, ignore_errors=True)  # a failed build leaves no stale book behind
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(source),
           "--config", str(source / "_config.yml"), "--toc", str(toc),
           "--path-output", str(work), "--all", "-W", "-n", "--keep-going"]
    print("$", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT)
    if code == 0 and out != default:
        shutil.rmtree(out, ignore_errors=True)
        shutil.move(str(work / "_build" / "html"), out)
    return code


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="build on the sample (as BOOK_FAST=1)")
    parser.add_argument("--out", type=Path, default=Path("_build/html"), help="HTML output folder")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml",
                        help="another table of contents (to build some chapters only)")
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder of chapters executed already (tools/run_chapters.py): "
                             "build from them without executing again")
    parser.add_argument("--report", type=Path, default=None,
                        help="also write the build report (OUT/build_report.json) here")
    args = parser.parse_args(argv)
    out = (ROOT / args.out).resolve()
    started, load_start, steps = time.perf_counter(), os.getloadavg(), {}

    problems = toc_mismatch() if args.toc.resolve() == ROOT / "_toc.yml" else []
    if problems:
        print("ERROR: _toc.yml and notebooks/ disagree:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    fast, reason = choose_data(args.fast or fast_mode())
    os.environ["BOOK_FAST"] = "1" if fast else "0"
    executed, runs = args.executed, None
    steps["data"] = time.perf_counter() - started
    if executed is None:
        runs = ROOT / "_build" / f"executed-{out.name}"
        code = timed(steps, "models", make_models)
        code = code or timed(steps, "chapters", lambda: run_chapters(
            runs, fast, toc_chapters(args.toc.resolve())))
        if code != 0:
            print(f"\nBOOK BUILD FAILED after {time.perf_counter() - started:.0f} s (see above).",
                  file=sys.stderr)
            return code
        executed = runs / "notebooks"
    write_generated(fast, reason, executed_before=args.executed is not None)
    toc = args.toc.resolve()
    source = ROOT / "_build" / f".src-{out.name}"
    try:
        stage_executed_sources((ROOT / executed).resolve(), toc, source)
    except FileNotFoundError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    code = timed(steps, "book", lambda: run_jupyter_book(out, source / "_toc.yml", source))
    seconds = time.perf_counter() - started
    if code != 0:
        print(f"\nBOOK BUILD FAILED after {seconds:.0f} s (warnings count as errors; see above).",
              file=sys.stderr)
        return code
    mode = "FAST mode (sample)" if fast else "full data"
    (out / "build_seconds.json").write_text(json.dumps({"seconds": round(seconds, 1), "fast": fast}))
    steps["other"] = seconds - sum(steps.values())
    for path in [out / "build_report.json"] + ([args.report] if args.report else []):
        report = write_build_report(path, fast, steps, runs, load_start)
    print(f"\nBook built on {mode} in {seconds:.0f} s: {out.relative_to(ROOT)}/index.html "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in report['steps'].items())})")
    if fast and not (args.fast or fast_mode()):
        print(loud_banner(reason))
    return 0


if __name__ == "__main__":
    sys.exit(main())
