# Two commands: `make run` (the function on the CPU engine, results in ./output) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 8080
BIN    := $(VENV)/bin
# The PaddleOCR-VL adapter tests use the real paddleocr/paddlex classes, in a venv of their own:
# paddlex pins an OpenCV build that would overwrite the CPU engines' cv2 module. The main venv's run
# leaves those tests out (marker `paddle`, tests/conftest.py) rather than report them as skipped.
PVENV  ?= .venv-paddle
# Preloaded as the CPU image preloads them (Dockerfile.cpu, BENCHMARKS.md):
# - tcmalloc (system-deps installs it): glibc's malloc gives the engines' large page buffers back to
#   the kernel after every use and faults them in again;
# - zlib-ng as libz.so.1 (scripts/zlib-ng.sh builds it): Pillow inflates PNGs with the system's zlib,
#   which took 36 ms to decode an A4 page where zlib-ng takes 12.
ZLIB_NG := $(VENV)/lib/zlib-ng/libz.so.1
SERVE_ENV := LD_PRELOAD="libtcmalloc_minimal.so.4 $(abspath $(ZLIB_NG))" \
	TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=1099511627776

.PHONY: run test lint system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The project itself, editable, for the `ocr-function` command (from any directory; `serve` still
# runs handler.py from this checkout).
$(VENV)/.cpu: $(BIN)/python requirements.txt requirements-cpu.txt pyproject.toml
	$(BIN)/pip install -q -r requirements-cpu.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.cpu requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

$(PVENV)/.paddle: requirements.txt requirements-paddle.txt
	$(PYTHON) -m venv $(PVENV)
	$(PVENV)/bin/pip install -q -r requirements-paddle.txt
	touch $@

system-deps:
	bash scripts/system-deps.sh

$(ZLIB_NG): scripts/zlib-ng.sh scripts/zlib-ng.txt | $(BIN)/python
	bash scripts/zlib-ng.sh $(dir $@) $(BIN)/python

run: system-deps $(VENV)/.cpu $(ZLIB_NG)
	$(SERVE_ENV) WORKERS=1 $(BIN)/python -m function serve --port $(PORT)

# The rooms' import contract and the types of function/ (pyproject.toml), then the suite with the
# coverage gate on function/ (COVERAGE_MIN percent of its lines run by the tests in this process;
# 87.4% measured: the server subprocesses, the CLI and the paddle venv's run are not counted).
# Two pytest-xdist workers, each module run whole by one of them (its servers start once): much of
# the suite waits on server processes, sockets and timeouts, which the other worker's tests fill.
COVERAGE_MIN ?= 83
PYTEST_WORKERS ?= 2
test: system-deps $(VENV)/.dev $(PVENV)/.paddle $(ZLIB_NG)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not paddle" --cov=function --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_MIN)
	$(PVENV)/bin/python -m pytest -q -m paddle tests/test_engine_paddleocr_vl.py

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(PVENV) output
