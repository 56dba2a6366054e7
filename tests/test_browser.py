"""The built book, opened in headless Chromium: figures render, no errors, Colab links, exercises, TOC.

Runs against the fast-mode build that `make test` makes first
(`BOOK_FAST=1 python tools/build_book.py --out _build/fast`); BOOK_HTML names another build.
Needs Debian's `chromium` (/usr/bin/chromium, or $CHROMIUM): without it the tests are skipped with a
message, except under BOOK_REQUIRE_BROWSER=1 (set by `.ci/run`, which installs chromium) where they fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = (ROOT / os.environ.get("BOOK_HTML", "_build/fast")).resolve()
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
COLAB = "https://colab.research.google.com/github/torchbook/torchbook/blob/main/notebooks/{}.ipynb"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    if os.environ.get("BOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"no Chromium at {CHROMIUM}, and BOOK_REQUIRE_BROWSER=1 (CI) requires it",
                    pytrace=False)
    pytest.skip(f"SKIPPED: no Chromium at {CHROMIUM}; install Debian's `chromium` "
                "(apt-get install -y chromium) to check the built book in a browser",
                allow_module_level=True)
if not (HTML / "index.html").is_file():
    pytest.skip(f"SKIPPED: no built book at {HTML}; build it first with "
                "`BOOK_FAST=1 python tools/build_book.py --out _build/fast` (make test does)",
                allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, offline: only file:// requests are served."""
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page that aborts every request leaving the built book (CDNs, fonts)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
              else route.abort())
    yield tab
    context.close()


def open_page(page, path: Path) -> None:
    """Load a built page and wait until its images have loaded."""
    assert path.is_file(), f"{path.relative_to(HTML)} was not built (stale build? rebuild the book)"
    page.goto(path.as_uri(), wait_until="load")


def exercise_count(stem: str) -> int:
    """Count the {exercise} directives in a chapter notebook's markdown cells."""
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    return sum(c.source.count("```{exercise}") for c in nb.cells if c.cell_type == "markdown")


def test_every_chapter_has_a_page_and_there_are_chapters() -> None:
    """Each notebook in notebooks/ was built into a page."""
    assert CHAPTERS, "no chapter notebooks found"
    missing = [s for s in CHAPTERS if not (HTML / "notebooks" / f"{s}.html").is_file()]
    assert not missing, f"chapters without a built page (rebuild the book): {missing}"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_figures_render(page, stem: str) -> None:
    """Every image in the chapter's content loaded with a non-zero size, and there is a figure."""
    open_page(page, HTML / "notebooks" / f"{stem}.html")
    sizes = page.eval_on_selector_all(
        "article img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    broken = [src for src, complete, width in sizes if not complete or width == 0]
    assert not broken, f"{stem}: images that did not render: {broken}"
    outputs = [s for s, _, _ in sizes if "_images/" in s]
    assert outputs, f"{stem}: the page shows no figure"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_has_no_error_output(page, stem: str) -> None:
    """No traceback, error output or warning on stderr in the executed chapter."""
    open_page(page, HTML / "notebooks" / f"{stem}.html")
    assert page.locator("article .output.traceback, article .output.error").count() == 0, \
        f"{stem}: the page shows an error output"
    text = page.inner_text("article")
    assert "Traceback (most recent call last)" not in text, f"{stem}: traceback text on the page"
    stderr = page.eval_on_selector_all("article .output.stderr", "els => els.map(e => e.innerText)")
    bad = [s for s in stderr if re.search(r"Error|Warning|Traceback", s)]
    assert not bad, f"{stem}: warnings or errors on stderr: {bad}"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_has_colab_and_download_links(page, stem: str) -> None:
    """The launch menu opens this notebook on Colab, and the .ipynb can be downloaded."""
    open_page(page, HTML / "notebooks" / f"{stem}.html")
    assert page.locator(f'a[href="{COLAB.format(stem)}"]').count() == 1, f"{stem}: no Colab link"
    download = page.locator(f'a[href$="_sources/notebooks/{stem}.ipynb"]')
    assert download.count() >= 1, f"{stem}: no .ipynb download link"
    target = download.first.get_attribute("href")
    assert (HTML / "notebooks" / unquote(target)).resolve().is_file(), f"{stem}: {target} missing"


@pytest.mark.parametrize("stem", [s for s in CHAPTERS if exercise_count(s)])
def test_chapter_shows_its_exercises(page, stem: str) -> None:
    """Every {exercise} of the notebook is rendered as an exercise block, with a solution."""
    open_page(page, HTML / "notebooks" / f"{stem}.html")
    exercises = page.locator("article .exercise.admonition")
    assert exercises.count() == exercise_count(stem), f"{stem}: exercise blocks missing"
    assert exercises.first.is_visible()
    assert page.locator("article .solution.admonition").count() >= 1, f"{stem}: no solutions"


@pytest.mark.parametrize("stem", [s for s in CHAPTERS if s.startswith(("07", "09"))])
def test_formulas_are_typeset_offline(page, stem: str) -> None:
    """MathJax comes with the book (no CDN): every formula of a maths-heavy chapter is typeset."""
    open_page(page, HTML / "notebooks" / f"{stem}.html")
    formulas = page.locator("article .math")
    assert formulas.count() >= 5, f"{stem}: fewer formulas than expected"
    page.wait_for_function("n => document.querySelectorAll('article mjx-container').length >= n",
                           arg=formulas.count(), timeout=20_000)
    raw = [t for t in formulas.all_inner_texts() if "\\(" in t or "\\[" in t or "$" in t]
    assert not raw, f"{stem}: formulas left as TeX source: {raw[:3]}"


def local_targets(page) -> list[str]:
    """Return the sidebar and in-page navigation links that point into the book."""
    hrefs = page.eval_on_selector_all("nav a[href], .bd-sidebar a[href], article a.reference.internal",
                                      "links => links.map(a => a.href)")
    return sorted({h for h in hrefs if h.startswith("file:")})


def test_table_of_contents_links_resolve(page) -> None:
    """Every local link in the navigation of every page points at a file that exists."""
    pages = [*sorted(HTML.glob("book/*.html")), *sorted(HTML.glob("notebooks/*.html"))]
    missing, seen = [], 0
    for path in pages:
        open_page(page, path)
        for href in local_targets(page):
            seen += 1
            target = Path(unquote(urlparse(href).path))
            if not target.is_file():
                missing.append(f"{path.relative_to(HTML)} -> {target}")
    assert seen > len(pages), "the pages have no navigation links"
    assert not missing, "broken links:\n" + "\n".join(missing)
    open_page(page, HTML / "book" / "intro.html")
    toc = page.eval_on_selector_all(".bd-sidebar a.reference.internal", "links => links.map(a => a.href)")
    for stem in CHAPTERS:
        assert any(h.split("#")[0].endswith(f"notebooks/{stem}.html") for h in toc), f"{stem} not in the TOC"


def test_front_page_says_what_data_the_book_was_built_on(page) -> None:
    """The front page shows the build info (fast mode or full data) and the full chapter map."""
    fast = json.loads((HTML / "build_seconds.json").read_text())["fast"]
    open_page(page, HTML / "book" / "intro.html")
    text = page.inner_text("article")
    assert "This copy was built on" in text
    assert ("This copy of the book was built in fast mode" in text) == fast
    assert ("from full data" in text) == (not fast)
    assert text.count("(coming)") == 12 - len(CHAPTERS)  # chapters 00-11 planned


def test_screenshots_of_a_chapter_and_the_front_page(page) -> None:
    """Save screenshots of the front page and one chapter page as build artefacts."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    open_page(page, HTML / "book" / "intro.html")
    page.screenshot(path=str(SCREENSHOTS / "intro.png"), full_page=True)
    stem = next((s for s in CHAPTERS if s.startswith("03")), CHAPTERS[-1])
    open_page(page, HTML / "notebooks" / f"{stem}.html")
    page.locator("article img[src*='_images/']").first.scroll_into_view_if_needed()
    shot = SCREENSHOTS / f"{stem}.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
