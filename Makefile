# torchbook: `make book` builds the executed book, `make test` runs every check.
# Both do their own set-up (the .venv) and need no network.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.torchbook-installed

# Idle OpenMP threads sleep instead of spinning: on a small machine shared by a notebook kernel and
# other jobs, spinning threads slowed training up to 30x (benchmarks/README.md). Override freely.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help .venv data test unit notebooks book book-fast student grade bench booktime clean

help:
	@echo "make book   build the executed book into _build/html (full data when available)"
	@echo "make test   run unit tests, notebooks (nbval, fast mode), book and browser checks"
	@echo "make bench  race the book's training recipe against the source tutorial's"
	@echo "make data   prepare data/cifar10 and data/cifar2 (CIFAR10_SOURCE or download)"

# The virtual environment, rebuilt when requirements.txt or pyproject.toml change.
.venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, torchvision, torchbook, jupyter_book, nbval" || (echo "ERROR: the .venv install failed; see the pip output above" >&2; exit 1)
	touch $@

# Full data: data/cifar10 and data/cifar2 from $$CIFAR10_SOURCE or the official download.
data: .venv
	$(PY) data_scripts/prepare_data.py

# Everything `make test` runs, in fast mode on the committed sample: first the strict fast book
# (_build/fast, which tests/test_browser.py opens in Chromium), then one pytest run of the unit
# tests and every chapter under nbval. A failed book build still runs pytest, then fails.
test: .venv
	@BOOK_FAST=1 $(PY) tools/build_book.py --fast --out _build/fast; book=$$?; \
	BOOK_FAST=1 $(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider; tests=$$?; \
	if [ $$book -ne 0 ]; then echo "make test: the fast book build FAILED (see above)" >&2; exit $$book; fi; \
	exit $$tests

book: .venv
	$(PY) tools/build_book.py

book-fast: .venv
	BOOK_FAST=1 $(PY) tools/build_book.py --fast

student: .venv
	$(PY) tools/make_student.py

# Grade handed-in notebooks, SUBMISSIONS/<student>/NN_name.ipynb, with otter-grader and the checks
# in grading/: writes _build/grades/gradebook.csv and gradebook.md. GRADE_FLAGS passes options on,
# e.g. GRADE_FLAGS="--time-limit 300 --jobs 2" (book/instructors.md, "Grading").
grade: .venv
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=DIR" >&2; exit 2; }
	$(PY) tools/grade.py "$(SUBMISSIONS)" $(GRADE_FLAGS)

# Prepares data/cifar2 first (a no-op when it is complete), like `make book`.
bench: .venv data
	$(PY) benchmarks/cifar2_race.py

booktime: .venv data
	$(PY) benchmarks/book_time.py

clean:
	rm -rf _build .pytest_cache
