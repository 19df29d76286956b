# Set-up and the everyday jobs. `make demo` and `make test` work from a fresh clone.
# Installs are locked: `make setup` installs exactly requirements/$(FLAVOUR).lock (every package pinned, with hashes).
# GPU users: `make setup FLAVOUR=cuda`. Another Python or platform: `make setup LOCK=none` (pyproject ranges).
# Refresh the locks after changing pyproject.toml's dependencies: `make lock` (uv, resolves for Linux x86-64, CPython 3.11).
PYTHON ?= python3
FLAVOUR ?= cpu
LOCK ?= requirements/$(FLAVOUR).lock
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
XVFB := $(shell command -v xvfb-run 2>/dev/null)
PYTEST_ARGS ?=
# Test workers (pytest-xdist): one per logical CPU; each gets its share of the cores (tests/shared.py). 0 = serial.
PYTEST_WORKERS ?= logical

.PHONY: setup lock demo test test-portable lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(filter-out none,$(LOCK))
	$(PYTHON) -m venv $(VENV)
ifeq ($(LOCK),none)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
else
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
endif
	touch $(STAMP)

# The extras every lock holds (and `LOCK=none` installs).
EXTRAS := napari,distributed,dev
LOCK_ARGS = --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet \
	$(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e))
comma := ,
# Where the CPU build of torch lies (a folder or page of wheels; pip's own find-links by default).
TORCH_CPU_SOURCE ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV := .lockenv/bin/uv

lock:
	test -x $(UV) || ($(PYTHON) -m venv .lockenv && .lockenv/bin/python -m pip install -q "uv==0.13.9")
	$(UV) pip compile pyproject.toml $(LOCK_ARGS) -c requirements/torch-cpu.txt \
		$(if $(TORCH_CPU_SOURCE),--find-links $(TORCH_CPU_SOURCE)) -o requirements/cpu.lock
	$(UV) pip compile pyproject.toml $(LOCK_ARGS) -c requirements/torch-cuda.txt -o requirements/cuda.lock

demo: setup
	$(BIN)/segnet-domains demo --out demo_out

test: setup
	$(BIN)/ruff check .
	$(if $(XVFB),$(XVFB) -a -s "-screen 0 1280x1024x24") $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The numerics-sensitive tests (marked `numerics`) again under each oneDNN instruction-set cap and with one
# intra-op thread: what a user on another CPU family or a busy machine gets. A cap above what the CPU has is a
# no-op (`ONEDNN_VERBOSE=1` names the kernels oneDNN picks; see README).
PORTABLE := ONEDNN_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 OMP_NUM_THREADS=1
test-portable: setup
	@for setting in $(PORTABLE); do \
		echo "== make test-portable: $$setting"; \
		env $$setting $(if $(XVFB),$(XVFB) -a -s "-screen 0 1280x1024x24") $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m numerics -q \
			$(PYTEST_ARGS) || exit 1; \
	done

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

# One device's whole speed picture (benchmarks/gpu_check.py): bf16 matmul peak, SegNet(3,12) 360x480 network
# at batch 1/16 (eager and torch.compile), predict_proba, predict_volume, tile and training steps, each against
# its raw baseline; under 5 minutes on one H200. Prints line by line; figures in bench-gpu.json.
# `make bench-gpu BENCH_ARGS="--device cpu --quick"` runs the same on a CPU in seconds. Needs no `make setup`
# (uses .venv when there is one, else python3): a GPU machine brings its own CUDA torch.
BENCH_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
BENCH_ARGS ?= --device auto
.PHONY: bench-gpu
bench-gpu:
	$(BENCH_PY) benchmarks/gpu_check.py $(BENCH_ARGS) --json bench-gpu.json

# The packages a lent device machine's image lacks (its Python 3.12 has torch, numpy, scipy, scikit-image, onnx,
# pytest ...), at this project's locked versions, as wheels in the ignored .whl/ that benchmarks/device_lease.sh
# installs there: `run(command="bash benchmarks/device_lease.sh", carry=[".whl"], timeout_s=600)`. About 40 MB.
DEVICE_WHEELS := monai nibabel rasterio affine cligj click-plugins fire termcolor pydicom pystac
DEVICE_PLATFORMS := $(foreach n,28_x86_64 27_x86_64 17_x86_64,--platform manylinux_2_$(n)) --platform manylinux2014_x86_64
.PHONY: device-wheels
device-wheels:
	rm -rf .whl && mkdir -p .whl
	@for name in $(DEVICE_WHEELS); do \
		pin=$$(grep -iE "^$$name==" requirements/cpu.lock | cut -d' ' -f1); \
		[ -n "$$pin" ] || { echo "device-wheels: $$name is not in requirements/cpu.lock"; exit 1; }; \
		$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
			$(DEVICE_PLATFORMS) -d .whl "$$pin" || exit 1; \
	done
	@du -sh .whl
