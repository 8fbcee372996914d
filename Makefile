# Every target makes its own virtual environment and installs what it needs.
# CPU torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean-venv

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

## The whole test suite (what CI runs). The job-store tests also run on PostgreSQL when its server
## binaries are installed (Debian: apt-get install postgresql); they start a throwaway server themselves.
test: $(VENV)/.stamp-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check zlt tests bench examples

bench: $(VENV)/.stamp-dev
	$(PY) bench/startup.py

clean-venv:
	rm -rf $(VENV)
