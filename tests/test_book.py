"""The book's configuration, table of contents and chapter structure (no build needed)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from scripts import import_script
from torchbook import book

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPOSITORY = "https://github.com/torchbook/torchbook"
# Chapters without exercises: 00 only checks the reader's setup.
NO_EXERCISES = {"00"}


build_book = import_script("tools", "build_book")


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Return the notebook's code cells."""
    return [c for c in nb.cells if c.cell_type == "code"]


def read(path: Path) -> nbformat.NotebookNode:
    """Read a notebook as nbformat 4."""
    return nbformat.read(path, as_version=4)


# --- configuration --------------------------------------------------------------------------

def test_execution_is_forced_strict_and_fits_the_slowest_chapter() -> None:
    """Every build executes every chapter, a failing cell fails it, a cell may take 10 minutes."""
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] == "force"
    assert execute["allow_errors"] is False
    assert execute["timeout"] >= 600
    assert execute["run_in_temp"] is False
    sphinx = CONFIG["sphinx"]["config"]
    assert sphinx["nb_execution_raise_on_error"] is True
    assert sphinx["nitpicky"] is True


def test_build_script_runs_jupyter_book_strictly() -> None:
    """The build command turns warnings into errors, is nitpicky, keeps going, rebuilds all."""
    source = (ROOT / "tools" / "build_book.py").read_text()
    for flag in ('"-W"', '"-n"', '"--keep-going"', '"--all"'):
        assert flag in source


def test_only_the_toc_is_built_and_the_rest_is_excluded() -> None:
    """Build outputs, the venv, data and benchmarks are never read as pages."""
    assert CONFIG["only_build_toc_files"] is True
    for pattern in ("_build", ".venv", ".venv-oldest", "data", "benchmarks", "README.md"):
        assert pattern in CONFIG["exclude_patterns"]


def test_repository_and_launch_buttons_give_colab_and_download() -> None:
    """Colab launch links and .ipynb downloads point at the book's repository, branch main."""
    assert CONFIG["repository"] == {"url": REPOSITORY, "branch": "main", "path_to_book": ""}
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["launch_buttons"]["notebook_interface"] == "jupyterlab"
    assert CONFIG["html"]["use_download_button"] is True
    assert "sphinx_exercise" in CONFIG["sphinx"]["extra_extensions"]


def test_bootstrap_installs_from_the_configured_repository() -> None:
    """The Colab bootstrap installs torchbook from the repository the book links to, at a tag."""
    bootstrap = code_cells(read(ROOT / "notebooks" / "00_setup.ipynb"))[0].source
    assert re.search(rf"git\+{re.escape(REPOSITORY)}@v\d+\.\d+\.\d+", bootstrap)
    assert "google.colab" in bootstrap
    installs = [line for line in bootstrap.splitlines() if "pip install" in line]
    assert installs and not any(re.search(r"\s(-U|--upgrade)\b|\btorch(vision)?\b", line)
                                for line in installs), installs


def test_bibliography_has_every_cited_key() -> None:
    """Every {cite} key on the references page is in references.bib."""
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.MULTILINE))
    cited = {k for group in re.findall(r"\{cite:p\}`([^`]+)`", (ROOT / "book" / "references.md").read_text())
             for k in group.split(",")}
    assert cited and cited <= keys, cited - keys
    assert {"krizhevsky2009cifar", "lyhue1991eatpytorch", "zhang2023d2l"} <= keys


# --- table of contents ----------------------------------------------------------------------

def test_every_chapter_is_in_the_toc_and_every_toc_file_exists() -> None:
    """notebooks/ and _toc.yml agree (adding a chapter is one line in _toc.yml)."""
    assert build_book.toc_mismatch() == []
    for entry in build_book.toc_files():
        assert list(ROOT.glob(entry + ".*")), f"{entry} in _toc.yml does not exist"


def test_toc_has_the_prose_pages_and_chapters_in_order_under_their_parts() -> None:
    """Front page, setup, instructors and references pages; chapters in number order, in PLAN's parts."""
    files = build_book.toc_files()
    assert files[0] == "book/intro"
    assert {"book/setup", "book/instructors", "book/references"} <= set(files)
    chapters = [f for f in files if f.startswith("notebooks/")]
    assert chapters == sorted(chapters)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        for entry in part["chapters"]:
            number = Path(entry["file"]).name[:2]
            if entry["file"].startswith("notebooks/"):
                assert build_book.PLAN[number][0] == part["caption"], entry["file"]


def test_every_prose_page_is_in_the_toc() -> None:
    """No page in book/ is left out of the book (only_build_toc_files would skip it silently)."""
    pages = {f"book/{p.stem}" for p in (ROOT / "book").glob("*.md")}
    assert pages <= set(build_book.toc_files()), pages - set(build_book.toc_files())


def test_the_plan_has_eleven_chapters_and_covers_every_notebook() -> None:
    """Chapters 00-11 are planned; every notebook's number is one of them."""
    assert list(build_book.PLAN) == [f"{n:02d}" for n in range(12)]
    assert {p.name[:2] for p in CHAPTERS} <= set(build_book.PLAN)
    for number, (part, _title, depends) in build_book.PLAN.items():
        assert part in build_book.PARTS
        assert all(d < number for d in depends), f"chapter {number} builds on a later chapter"


def test_chapter_map_links_written_chapters_and_marks_the_others_coming() -> None:
    """The front page's map lists every planned chapter; only written ones are links."""
    rows = build_book.chapter_rows()
    text = build_book.chapter_map_md(rows)
    written = {p.stem for p in CHAPTERS}
    assert len(rows) == len(build_book.PLAN)
    assert text.count("(coming)") == len(build_book.PLAN) - len(written)
    for stem in written:
        assert f"</notebooks/{stem}>" in text
    table = build_book.instructor_table_md(rows)
    assert len(table.strip().splitlines()) == 2 + len(build_book.PLAN)


def test_full_data_failure_falls_back_to_fast_mode_loudly(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """No data: a banner says so and the build goes on in fast mode; asking for fast skips data."""
    monkeypatch.setattr(build_book, "prepare_full_data", lambda: (False, "no network, no CIFAR10_SOURCE"))
    assert build_book.choose_data(False) == (True, "no network, no CIFAR10_SOURCE")
    banner = capsys.readouterr().out
    assert "NO FULL DATA" in banner and "CIFAR10_SOURCE=" in banner
    monkeypatch.setattr(build_book, "prepare_full_data", lambda: pytest.fail("must not prepare data"))
    assert build_book.choose_data(True)[0] is True
    monkeypatch.setattr(build_book, "prepare_full_data", lambda: (True, "ready"))
    assert build_book.choose_data(False) == (False, "")


def test_build_info_names_the_data_and_the_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated front-page paragraph says fast mode (with a warning) or full data."""
    monkeypatch.setattr(build_book, "GENERATED", tmp_path)
    build_book.write_generated(fast=True, reason="test")
    text = (tmp_path / "build_info.md").read_text()
    assert "fast mode" in text and "{warning}" in text and "torch " in text
    info = json.loads((tmp_path / "build_info.json").read_text())
    assert info["fast"] is True and len(info["chapters"]) == len(build_book.PLAN)
    assert "executed during the build" in text
    build_book.write_generated(fast=False, reason="")
    assert "full data" in (tmp_path / "build_info.md").read_text()
    build_book.write_generated(fast=True, reason="test", executed_before=True)
    assert "executed for this build" in (tmp_path / "build_info.md").read_text()


def test_fast_book_from_executed_chapters_changes_only_the_execution(tmp_path: Path) -> None:
    """make test's book: the same sources and config, the executed chapters, execution off."""
    executed = tmp_path / "executed"
    executed.mkdir()
    for chapter in CHAPTERS:
        (executed / chapter.name).write_bytes(chapter.read_bytes())
    config_path = build_book.stage_executed_sources(executed, ROOT / "_toc.yml", tmp_path / "src")
    staged = yaml.safe_load(config_path.read_text())
    assert staged["execute"].pop("execute_notebooks") == "off"
    original = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert original["execute"].pop("execute_notebooks") == "force"
    assert staged == original
    assert staged["execute"]["stderr_output"] == "warn", "stderr in a stored output still fails"
    for chapter in CHAPTERS:
        assert (tmp_path / "src" / "notebooks" / chapter.name).read_bytes() == chapter.read_bytes()
    assert (tmp_path / "src" / "book" / "intro.md").is_file()
    assert (tmp_path / "src" / "_toc.yml").read_text() == (ROOT / "_toc.yml").read_text()
    (executed / CHAPTERS[-1].name).unlink()
    with pytest.raises(FileNotFoundError, match=CHAPTERS[-1].stem):
        build_book.stage_executed_sources(executed, ROOT / "_toc.yml", tmp_path / "src")


def test_book_build_trains_the_models_then_executes_the_chapters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`make book`: the models first (a failure stops the build there), then the chapters."""
    calls = []
    monkeypatch.setenv("BOOK_FAST", "1")
    monkeypatch.setattr(build_book, "make_models", lambda: calls.append("models") or 3)
    monkeypatch.setattr(build_book, "run_chapters",
                        lambda *args: pytest.fail("no chapter may run after a failed make models"))
    assert build_book.main(["--out", "_build/never"]) == 3 and calls == ["models"]
    monkeypatch.setattr(build_book, "make_models", lambda: calls.append("models again") or 0)
    monkeypatch.setattr(build_book, "run_chapters",
                        lambda out, fast, chapters: calls.append(("chapters", fast, chapters)) or 1)
    assert build_book.main(["--out", "_build/never"]) == 1
    assert calls[-1] == ("chapters", True, [p.stem for p in CHAPTERS])


def test_the_book_renders_streams_merged_by_the_runner_not_by_myst_nb() -> None:
    """myst-nb's nb_merge_streams edited outputs in place and printed lines twice: it stays off."""
    assert CONFIG["sphinx"]["config"]["nb_merge_streams"] is False


# --- measured run times (torchbook.book.chapter_times) --------------------------------------

def test_chapter_times_formats_measured_fast_full_and_gpu(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Times from book_time.json become one line; a chapter not measured says so."""
    path = tmp_path / "book_time.json"
    path.write_text(json.dumps({"notebooks": {"03_training_loops": {
        "fast": {"seconds": 41.6, "ok": True}, "full": {"seconds": 252.0, "ok": True},
        "gpu": {"seconds": 30.2, "ok": True}}}}))
    read = book.read_book_times
    monkeypatch.setattr(book, "read_book_times", lambda _=None: read(path))
    line = book.chapter_times("03_training_loops")
    assert line == ("Run time on a 2-core CPU: 4.2 min on the full data, 42 s in fast mode; "
                    "30 s on a GPU (full data) (measured by make booktime, with the trained "
                    "models already saved).")
    assert "not measured" in book.chapter_times("09_nothing")


def test_read_book_times_reads_benchmarks_book_time_format(tmp_path: Path) -> None:
    """benchmarks/book_time.py's JSON: notebooks -> stem -> mode -> run; failed runs do not count."""
    path = tmp_path / "book_time.json"
    path.write_text(json.dumps({"command": "python benchmarks/book_time.py", "limits": {"x": 1},
                                "notebooks": {"02_models": {"fast": {"seconds": 9.5, "ok": True},
                                                            "full": {"seconds": 30.0, "ok": False}}}}))
    times = book.read_book_times(path)
    assert list(times) == ["02_models"]
    assert book.chapter_seconds(times["02_models"]) == {"fast": 9.5, "full": None, "gpu": None}
    assert book.read_book_times(tmp_path / "missing.json") == {}


# --- chapter structure ------------------------------------------------------------------------

def test_there_are_chapters() -> None:
    """At least chapter 00 exists."""
    assert (ROOT / "notebooks" / "00_setup.ipynb") in CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_bootstrap_of_chapter_00(chapter: Path) -> None:
    """Every chapter starts with the very same Colab bootstrap cell."""
    bootstrap = code_cells(read(ROOT / "notebooks" / "00_setup.ipynb"))[0].source
    assert code_cells(read(chapter))[0].source == bootstrap


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_title_objectives_and_prerequisites(chapter: Path) -> None:
    """The first cell is markdown: '# Title', learning objectives, prerequisites."""
    first = read(chapter).cells[0]
    assert first.cell_type == "markdown"
    assert re.match(r"# \S", first.source)
    assert "Prerequisites" in first.source
    assert re.search(r"learn|will be able", first.source, re.IGNORECASE)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ends_with_the_footer(chapter: Path) -> None:
    """The last code cell prints torchbook.book.chapter_footer()."""
    last = code_cells(read(chapter))[-1].source
    assert "chapter_footer()" in last and "print(" in last


@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if c.name[:2] not in NO_EXERCISES],
                         ids=lambda p: p.stem)
def test_chapter_has_two_to_four_exercises_each_with_a_solution(chapter: Path) -> None:
    """2-4 {exercise} blocks with labels chNN-exK, each answered by a {solution}; solution code tagged."""
    nb = read(chapter)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    labels = re.findall(r"\{exercise\}[^\n]*\n:label:\s*(\S+)", markdown)
    assert 2 <= len(labels) <= 4, labels
    number = chapter.name[:2]
    assert all(label.startswith(f"ch{number}-ex") for label in labels), labels
    answered = re.findall(r"\{solution\}\s*(\S+)", markdown)
    assert sorted(answered) == sorted(labels)
    for before, cell in zip(nb.cells, nb.cells[1:]):
        if "solution" in cell.metadata.get("tags", []):
            assert cell.cell_type == "code"
            assert "{solution}" in before.source or "solution" in before.metadata.get("tags", []), \
                "a solution code cell must follow its {solution} block"


def test_bug_report_template_asks_for_what_a_report_needs() -> None:
    """Colab or local, the device, the versions line, the chapter and cell, happened vs expected."""
    form = yaml.safe_load((ROOT / ".github" / "ISSUE_TEMPLATE" / "bug_report.yml").read_text())
    fields = {item["id"]: item for item in form["body"] if "id" in item}
    assert {"where", "device", "versions", "chapter", "happened", "expected"} <= set(fields)
    assert "Colab" in fields["where"]["attributes"]["options"]
    assert {"CPU", "GPU (CUDA)", "Apple GPU (MPS)"} <= set(fields["device"]["attributes"]["options"])
    assert "versions_line()" in fields["versions"]["attributes"]["description"]
    assert all(fields[k]["validations"]["required"] for k in ("where", "versions", "chapter", "happened"))


def test_the_build_report_names_the_machine_the_steps_models_and_slow_cells(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make book` records: each step's seconds, each model's, each chapter's, the CPU."""
    runs = tmp_path / "executed"
    runs.mkdir()
    slow = [{"cell": 34, "seconds": 130.0, "source": "model = load()"}]
    (runs / "report.json").write_text(json.dumps({"runs": {"notebooks": {
        "08_x": {"seconds": 251.0, "ok": True, "slow_cells": slow}}, "student": {}}}))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(build_book, "model_report", lambda: {"cifar10": {"train_seconds": 562.1}})
    report = build_book.write_build_report(tmp_path / "report.json", False,
                                           {"models": 600.0, "chapters": 300.0, "book": 60.0},
                                           runs, (0.5, 0.5, 0.5))
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["seconds"] == 960.0 and report["environment"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert report["cpu_model"] and report["chapters"] == {"08_x": {"seconds": 251.0,
                                                                   "slow_cells": slow}}
    assert report["models"] == {"cifar10": {"train_seconds": 562.1}}
    assert report["load_average"]["start"] == [0.5, 0.5, 0.5]
