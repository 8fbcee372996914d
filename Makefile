# Every target makes its own virtual environment and installs what it needs.
# CPU torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=
# Two test processes (pytest-xdist, work stealing so the long end-to-end tests do not queue behind one worker):
# the suite mostly waits on subprocesses, and CI has 2 cores. Tests marked `serial` (stop ladders, cancels that
# land mid-step, evaluation threads racing the trainer) run alone afterwards, on an otherwise idle machine.
PYTEST_WORKERS ?= 2

.PHONY: demo demo-caption test pg-server browser dashboard-shots lint bench clean-venv

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.stamp-train: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[train,plot]'
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[train,plot,serve,postgres,dev]'
	touch $@

## The main job on the embedded default: the tiny built-in Z-Image model, on the CPU.
demo: $(VENV)/.stamp-train
	$(PY) examples/quickstart/make_dataset.py examples/quickstart/dataset
	$(VENV)/bin/zlt train examples/quickstart/spec.yaml
	@echo "smoke test: a contact sheet from the tiny model's LoRA (it shows the path works, not a style)"
	$(VENV)/bin/zlt generate latest --prompt "a house by a lake" --prompt "a tree" --count 2 --size 64x64 --steps 4
	@echo "smoke test: evaluate the LoRA with the built-in tiny CLIP (the numbers are noise; the path is real)"
	$(VENV)/bin/zlt eval latest --clip zlt/tiny-clip --checkpoints last --prompts examples/quickstart/eval_prompts.txt --steps 4

## The dataset variant of the demo: bare images (no captions) captioned by the job itself (dataset.caption.auto)
## with the tiny random captioner, then trained on the tiny model; all on the CPU, offline.
demo-caption: $(VENV)/.stamp-train
	rm -rf examples/quickstart/dataset_bare
	$(PY) examples/quickstart/make_dataset.py examples/quickstart/dataset_bare --size 64
	rm -f examples/quickstart/dataset_bare/*.txt
	$(VENV)/bin/zlt train examples/quickstart/spec_caption.yaml
	@echo "captions the job wrote (tiny random captioner: real words, no meaning):"
	@head -n 3 examples/quickstart/dataset_bare/*.txt

## PostgreSQL's server binaries, for the job-store tests on PostgreSQL (they start a throwaway server themselves):
## Debian's package, installed when missing and this is root with apt-get; elsewhere those tests are skipped.
pg-server:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's postgresql for the job-store tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	else echo "note: PostgreSQL is not installed; the job-store tests run on SQLite only (apt-get install postgresql)"; fi

## Debian's chromium, for the dashboard's real-browser tests (tests/browser: Playwright for Python, from the dev extra,
## drives the system browser; it downloads none): installed when missing and this is root with apt-get; elsewhere those
## tests are skipped (CI=true: they fail).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the dashboard's browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else echo "note: chromium is not installed; the dashboard's browser tests are skipped (apt-get install chromium)"; fi

## The screenshots in docs/dashboard.md, from the browser test's real run.
dashboard-shots: $(VENV)/.stamp-dev browser
	ZLT_DASHBOARD_SHOTS=docs/img/dashboard $(PY) -m pytest -q tests/browser

## The whole test suite (what CI runs), on SQLite and on PostgreSQL.
test: $(VENV)/.stamp-dev pg-server browser
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -q -m serial $(PYTEST_ARGS)

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check zlt tests bench examples

bench: $(VENV)/.stamp-dev
	$(PY) bench/startup.py

clean-venv:
	rm -rf $(VENV)
