# Set-up and the everyday jobs. `make demo` and `make test` work from a fresh clone.
# GPU users: `make setup TORCH=torch` (or a CUDA wheel spec) instead of the pinned CPU build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
XVFB := $(shell command -v xvfb-run 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[napari,distributed,dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/segnet-domains demo --out demo_out

test: setup
	$(BIN)/ruff check .
	$(if $(XVFB),$(XVFB) -a -s "-screen 0 1280x1024x24") $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/run_all.py

# The web demo (segnet-domains serve) on http://127.0.0.1:8765/; trains the demo models first if any is missing.
.PHONY: serve
serve: setup
	@missing=""; for d in mri fundus aerial; do [ -f demo_out/models/$$d/best.pt ] || missing="$$missing $$d"; done; \
	if [ -n "$$missing" ]; then \
		echo "no demo model for:$$missing; training them first (make demo)"; \
		$(BIN)/segnet-domains demo --out demo_out --only $$missing; \
	fi
	$(BIN)/segnet-domains serve --demo-dir demo_out

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
