# tdd_lite: every job does its own set-up (a local virtual environment in .venv), so on a fresh clone
#   make book   installs, executes every notebook (fast mode unless TDD_FAST=0) and builds the site in _build/html
#   make test   installs, then runs every test: ruff, unit tests, the book build + browser check, nbval
# Each job installs the package (editable) with the extras of pyproject.toml it needs (see the stamps below).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per set of extras, named after them ($(VENV)/.installed-book-course: `pip install -e ".[book,course]"`),
# made by the one pattern rule below, which only touches the stamp when one of a superset is already up to date.
STAMP_BOOK := $(VENV)/.installed-book-course
STAMP_LAB := $(VENV)/.installed-course
STAMP_ALL := $(VENV)/.installed-dev-book-course
comma := ,
# One speed knob (read by tdd_lite.config): 1 = CI/CPU minutes; 0 = the full, paper-sized run.
TDD_FAST ?= 1
export TDD_FAST
export PYTHONHASHSEED ?= 0

.PHONY: install book book-instructor assignments test unit nbval lint lab bench browser-deps model clean help

help:
	@echo "make book   - set up, execute the notebooks, build the book (_build/html/index.html), student edition"
	@echo "make book-instructor - the instructor edition, with the exercises' solutions (_build/instructor/html)"
	@echo "make assignments - the exercise notebooks to hand out and the autograder zips (_build/assignments)"
	@echo "make test   - set up, then every test (lint, unit, book + browser check, nbval)"
	@echo "make lab    - JupyterLab on the notebooks"
	@echo "make bench  - print the benchmark ratios (benchmarks/)"
	@echo "make model  - rebuild the teaching 3DMM and check it matches the committed asset (within float noise)"

# facenet-pytorch (MTCNN, the paper's first-frame detector; its weights ship in the wheel) pins torch<2.3 and
# numpy<2, which its detector does not need: installed without its dependencies (it runs on the ones we pin).
FACENET := facenet-pytorch==2.6.0

# Another user's installed .venv (a checkout set up once by root, say) is used as it is, never re-installed: a
# normal user cannot write into it. Whether it can run for this user is checked by `make lab` (VENV_RUNS).
VENV_FOREIGN := $(shell ls $(VENV)/.installed-* >/dev/null 2>&1 && [ ! -w $(VENV) ] && echo yes)
ifeq ($(VENV_FOREIGN),yes)
$(VENV)/.installed-%: pyproject.toml Makefile
	@echo "note: $(VENV) may be older than pyproject.toml/Makefile (or lack .[$(subst -,$(comma),$*)]) but belongs\
	 to $$(stat -c %U $(VENV)), not to $$(id -un): using it as it is (its owner updates it with 'make install')"
else
$(VENV)/.installed-%: pyproject.toml Makefile
	@for s in $(VENV)/.installed-*; do \
	  [ -e "$$s" ] && [ "$$s" -nt pyproject.toml ] && [ "$$s" -nt Makefile ] || continue; \
	  have=" $$(echo "$${s##*/.installed-}" | tr - ' ') "; missing=; \
	  for x in $(subst -, ,$*); do case "$$have" in *" $$x "*) ;; *) missing=1;; esac; done; \
	  if [ -z "$$missing" ]; then touch $@; exit 0; fi; \
	done; \
	test -d $(VENV) || test -w . || { echo "make: $(CURDIR) is not writable by $$(id -un), so no $(VENV) can be\
	 made here: work in your own copy (git clone $(CURDIR) ~/tdd_lite; cd ~/tdd_lite; make lab)"; exit 1; }; \
	set -ex; \
	test -d $(VENV) || $(PYTHON) -m venv $(VENV); \
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"; \
	$(BIN)/python -m pip install --quiet -e ".[$(subst -,$(comma),$*)]"; \
	$(BIN)/python -m pip install --quiet --no-deps "$(FACENET)"; \
	if $(BIN)/python -c "import ipykernel" 2>/dev/null; then \
	  $(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (tdd_lite)" >/dev/null; \
	fi; \
	touch $@
endif

# A venv's python is a link to the interpreter it was made from: one under another user's private home (root's
# pyenv in /root, say) cannot run for anyone else. Said in words instead of "bad interpreter: Permission denied".
VENV_RUNS = $(BIN)/python -c "" 2>/dev/null || { echo "make: $(BIN)/python cannot run for $$(id -un): it links to\
 $$(sed -n 's/^executable = //p' $(VENV)/pyvenv.cfg), which this user may not execute ($(VENV) was made by\
 $$(stat -c %U $(VENV))). Work in your own copy: git clone $(CURDIR) ~/tdd_lite; cd ~/tdd_lite; make lab"; exit 1; }

# Everything a developer uses (what `make test` installs); the `peers` extra stays separate (see pyproject.toml).
install: $(STAMP_ALL)

# Headless Chromium for the browser check of the built site (Debian's package; nothing is downloaded by
# Playwright). Installed only where apt-get is available and we are root; elsewhere the check is skipped.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser check"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser check will be skipped"; \
	  else echo "no chromium and no root apt-get: the browser check will be skipped"; fi; \
	fi

# Two editions from one source (notebooks/ and the otter-grader masters in exercises/). The exercise pages are
# generated into book/exercises/ (git-ignored): the student notebooks (stubs, public checks) for `make book`, the
# executed solution notebooks for `make book-instructor`, which then puts the student pages back.
book: $(STAMP_BOOK)
	@$(BIN)/python -c "from tdd_lite.config import describe_run; print(describe_run())"
	@start=$$(date +%s); \
	$(BIN)/python -m tdd_lite.coursework book-pages student && \
	rm -rf _build/html _build/.doctrees && \
	TDD_EDITION=student $(BIN)/jupyter-book build . --path-output . -W --keep-going && \
	test -f _build/html/index.html && \
	echo "book: _build/html/index.html (student edition, $$(( $$(date +%s) - start )) s)"

book-instructor: $(STAMP_BOOK)
	@start=$$(date +%s); \
	$(BIN)/python -m tdd_lite.coursework book-pages instructor && \
	rm -rf _build/instructor && \
	TDD_EDITION=instructor $(BIN)/jupyter-book build . --path-output _build/instructor -W --keep-going; \
	status=$$?; $(BIN)/python -m tdd_lite.coursework book-pages student >/dev/null; \
	test $$status = 0 && test -f _build/instructor/_build/html/index.html && \
	ln -sfn _build/html _build/instructor/html && \
	echo "book-instructor: _build/instructor/html/index.html ($$(( $$(date +%s) - start )) s)"

# What an instructor hands out (exNN/student/*.ipynb) and grades with (exNN/autograder/*-autograder_*.zip:
# `otter run -a ZIP submission.ipynb`, offline, no Docker).
assignments: $(STAMP_LAB)
	$(BIN)/python -m tdd_lite.coursework assignments _build/assignments
	@echo "assignments: _build/assignments/exNN/{student,autograder}"

lint: $(STAMP_ALL)
	$(BIN)/ruff check .

unit: $(STAMP_ALL)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

nbval: $(STAMP_ALL)
	$(BIN)/python -m pytest --nbval-lax -p no:xdist notebooks -q

test: $(STAMP_ALL) browser-deps
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint && \
	$(MAKE) --no-print-directory book && \
	$(MAKE) --no-print-directory book-instructor && \
	$(MAKE) --no-print-directory unit TDD_REQUIRE_BROWSER=1 && \
	$(MAKE) --no-print-directory nbval && \
	echo "make test: all passed in $$(( $$(date +%s) - start )) s"

# JupyterLab refuses to start as root without --allow-root (containers and many lab machines run as root). A normal
# user works in a copy of their own (make lab makes its .venv there; notebooks save into notebooks/ and write
# _build/, so a checkout they cannot write is no place to work); JupyterLab keeps its state in ~/.local/share.
LAB_ARGS ?=
lab: $(STAMP_LAB)
	@$(VENV_RUNS)
	$(BIN)/jupyter lab notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

bench: $(STAMP_ALL)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

model: $(STAMP_ALL)
	$(BIN)/python tools/build_teaching_model.py --check

clean:
	rm -rf _build .pytest_cache
