"""Tests for the lines the book prints about itself (torchbook.book)."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import torch
import torchvision

import torchbook
from torchbook import book


def test_versions_line_names_every_version_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug-report line carries torchbook, torch, torchvision versions and the device."""
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    line = book.versions_line()
    assert line == (f"torchbook {torchbook.__version__}, torch {torch.__version__}, "
                    f"torchvision {torchvision.__version__}, device cpu")


@pytest.mark.parametrize("fast, words", [("1", "fast mode"), ("", "full data")])
def test_chapter_footer_says_date_data_and_time(monkeypatch: pytest.MonkeyPatch, fast: str, words: str) -> None:
    """The footer names versions, today's date, the data mode and a run time in seconds."""
    monkeypatch.setenv("BOOK_FAST", fast)
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    footer = book.chapter_footer()
    assert footer.startswith(f"Executed with torchbook {torchbook.__version__}, torch {torch.__version__} "
                             f"(torchvision {torchvision.__version__}), on {dt.date.today().isoformat()}")
    assert words in footer
    assert re.search(r"\d+ s\)\.$", footer)
