# torchbook: `make book` builds the executed book, `make test` runs every check.
# Both do their own set-up (the .venv) and need no network.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.torchbook-installed

# Idle OpenMP threads sleep instead of spinning: on a small machine shared by a notebook kernel and
# other jobs, spinning threads slowed training up to 30x (benchmarks/README.md). Override freely.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help .venv data models test test-fast test-oldest chapters book book-fast student grade \
	bench booktime clean

help:
	@echo "make book         build the executed book into _build/html (full data when available)"
	@echo "make models       train the models the chapters load (make book runs it first)"
	@echo "make test         run every check: unit tests, chapters (fast mode), book, browser"
	@echo "make test-fast    unit tests only (no chapter is executed), for the inner loop"
	@echo "make test-oldest  the chapters, the strict fast book and the tests on the oldest versions"
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

# Every model the chapters load, trained by the book's engine before they run: a saved model with
# the current recipe is skipped, a stopped run resumes from its last complete epoch.
models: .venv data
	$(PY) -m torchbook.zoo

# Everything `make test` runs, in fast mode on the committed sample. Each chapter executes once
# (tools/run_chapters.py, $(JOBS) at a time; with its student edition where solutions are
# removed); the strict fast book (_build/fast, which tests/test_browser.py opens in Chromium) is
# built from those runs without executing again; then one pytest run of every test, whose
# notebook tests (checked outputs as nbval-lax compares them, the student edition) read the runs.
# A failed step still runs the next ones, then fails.
JOBS ?= 2
EXECUTED := _build/executed
test: .venv
	@$(call check_chapters,$(PY),$(EXECUTED),_build/fast,tests)

# $(call check_chapters,python,runs folder,book folder,pytest arguments[,run_chapters options])
define check_chapters
$(1) tools/run_chapters.py --jobs $(JOBS) --out $(2) $(5); runs=$$?; \
BOOK_FAST=1 $(1) tools/build_book.py --fast --executed $(2)/notebooks --out $(3); book=$$?; \
BOOK_EXECUTED=$(2) BOOK_HTML=$(3) BOOK_FAST=1 $(1) -m pytest -q -p no:cacheprovider $(4); tests=$$?; \
if [ $$runs -ne 0 ]; then echo "make: a chapter FAILED to execute (see above)" >&2; exit $$runs; fi; \
if [ $$book -ne 0 ]; then echo "make: the fast book build FAILED (see above)" >&2; exit $$book; fi; \
exit $$tests
endef

# The inner loop: every unit test, no chapter executed, no book built (a minute or two).
test-fast: .venv
	BOOK_FAST=1 $(PY) -m pytest -q -p no:cacheprovider tests -m "not notebooks" \
		--ignore=tests/test_browser.py

# The oldest supported versions (requirements-oldest.txt) with the oldest Python found
# (tools/oldest_python.py): every chapter, the strict fast book and every test but the browser's
# and the student editions' runs (those check tools/make_student.py, which make test covers: a
# student edition runs the chapter's code less its solutions, which the chapter run executes).
OLDEST := .venv-oldest
OLDEST_PY := $(OLDEST)/bin/python
OLDEST_STAMP := $(OLDEST)/.torchbook-installed
$(OLDEST_STAMP): requirements-oldest.txt pyproject.toml
	@python=$$($(PYTHON) tools/oldest_python.py) || exit 1; \
	echo "make test-oldest: $(OLDEST) with $$python"; \
	rm -rf $(OLDEST) && $$python -m venv $(OLDEST) || exit 1
	$(OLDEST_PY) -m pip install -q --disable-pip-version-check -c requirements-oldest.txt -r requirements-oldest.txt -e . 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(OLDEST_PY) -c "import torch, torchvision, torchbook, jupyter_book, nbval; print('oldest:', torch.__version__, torchvision.__version__)" || (echo "ERROR: the $(OLDEST) install failed; see the pip output above" >&2; exit 1)
	touch $@

test-oldest: $(OLDEST_STAMP)
	@$(call check_chapters,$(OLDEST_PY),_build/executed-oldest,_build/fast-oldest,tests --ignore=tests/test_browser.py -k "not test_student_notebook_runs_in_fast_mode",--no-student)

# Execute the chapters once (and the student editions), as make test does, without the tests.
chapters: .venv
	$(PY) tools/run_chapters.py --jobs $(JOBS) --out $(EXECUTED)

# Prepares the data, runs `make models`, executes the chapters one at a time, builds strictly.
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
	$(PY) benchmarks/cifar10_race.py --save-model data/models/cifar10_resnet.pt

booktime: .venv data
	$(PY) benchmarks/book_time.py

clean:
	rm -rf _build .pytest_cache
