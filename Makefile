# Two commands: `make demo` runs the whole study on an embedded default; `make test` runs the suite.
# Both create .venv on first use and install the pinned CPU stack (constraints.txt).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml setup.py constraints.txt src/layerprobe/store/_crc32copy.c
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/layerprobe demo

bench: $(STAMP)
	$(BIN)/python benchmarks/store_io.py
	$(BIN)/python benchmarks/probe_throughput.py
	$(BIN)/python benchmarks/extract_throughput.py
	$(BIN)/python benchmarks/finetune_throughput.py
	$(BIN)/python benchmarks/study_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info src/layerprobe/store/_crc32copy*.so
