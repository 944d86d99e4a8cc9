# The two commands of the README:  `make course`  and  `make test`.
# Both build .venv once (re-built only when pyproject.toml changes) with pip, torch pinned.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-$(shell sha256sum pyproject.toml | cut -c1-12)
PROFILE ?= demo

.PHONY: course test venv lint clean-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (depthg)" >/dev/null
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/nbstripout --install; fi
	@rm -f $(VENV)/.stamp-*
	@touch $@

course: venv
	$(BIN)/python -m depthg_lib.course --profile $(PROFILE)

# Library tests, then every notebook executed by nbval with the `test` profile
# (the parameters cell reads DEPTHG_PROFILE; papermill overrides it in course runs).
test: venv lint
	$(BIN)/python -m pytest -q tests
	DEPTHG_PROFILE=test $(BIN)/python -m pytest -q --nbval-lax notebooks

lint: venv
	$(BIN)/ruff check .
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/deadcode.py

clean-runs:
	rm -rf runs

# The executed chapters of a run as a static website, runs/<profile>/book/index.html (built
# offline, warnings are errors) and checked to load nothing from other hosts and to show no
# raw Markdown table; the course runs first and skips the chapters already done.
.PHONY: book lab
book: course
	$(BIN)/python -m depthg_lib.book --profile $(PROFILE)
	$(BIN)/python tools/book_check.py --profile $(PROFILE)

# The chapters in JupyterLab with the course's kernel, "Python 3 (depthg)" (installed by venv);
# their parameters cell reads DEPTHG_PROFILE (= PROFILE). More options: LAB_ARGS="--no-browser".
lab: venv
	DEPTHG_PROFILE=$(PROFILE) $(BIN)/jupyter lab --ServerApp.root_dir=notebooks \
	    $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# A paper profile end to end on a machine with a GPU and a network (docs/reproduction.md):
# fetch what is missing (backbone, depth model, dataset, STEGO's released checkpoint), then run
# every chapter. `make reproduce PROFILE=cityscapes-vitb8 DRY_RUN=1` prints the plan and the disk it
# needs and changes nothing. DEVICE=cuda|cpu|auto (default auto).
.PHONY: reproduce
DEVICE ?= auto
reproduce: venv
	$(BIN)/python -m depthg_lib.fetch --profile $(PROFILE) $(if $(DRY_RUN),--dry-run)
	$(if $(DRY_RUN),@echo "then: $(BIN)/python -m depthg_lib.course --profile $(PROFILE) --device $(DEVICE)",$(BIN)/python -m depthg_lib.course --profile $(PROFILE) --device $(DEVICE))
