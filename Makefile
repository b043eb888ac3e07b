# The whole set-up lives here: `make up` runs the service, `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PROTO_DIR := gateway/proto
PROTO := $(PROTO_DIR)/vidstrata/v1/search.proto
PYTEST_ARGS ?=

.PHONY: install proto lint-imports test test-fast up docs model-repository bench bench-encoders bench-ingest bench-gateway bench-query bench-curve eval system-deps clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and pinned: the local CPU wheel, so pip never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) proto system-deps

# Stubs are generated from the .proto into the `vidstrata.v1` package, never edited by hand.
proto: $(STAMP)
	@if [ -f $(PROTO) ]; then $(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=. --grpc_python_out=. --pyi_out=. $(PROTO); fi

# Debian services the tests start on private ports: redis-server, and promtool/prometheus for the k8s rules;
# espeak-ng speaks the narration of the test and eval videos (speech search).
system-deps:
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing$$missing and apt-get cannot run here; the tests that need them skip"; fi; \
	fi

# The import contracts of DESIGN.md §2 first: a wrong arrow fails the build before any test runs.
lint-imports: install
	$(VENV)/bin/lint-imports --no-cache

test: install lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install lint-imports
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# Regenerates the README's settings table from the settings classes.
docs: install
	$(PY) -c "from pathlib import Path; from vidstrata.config_docs import update_readme; update_readme(Path('README.md'))"

model-repository: install
	$(VENV)/bin/vidstrata export --target python --out model_repository

up: install
	$(VENV)/bin/vidstrata up

bench-encoders: install
	$(PY) -m bench.encoders

bench-ingest: install
	$(PY) -m bench.ingest

bench-gateway: install
	$(PY) -m bench.gateway

# Search at 10k and 100k videos on the C++ Milvus 2.3.5 standalone, which it installs (build/milvus-venv), starts and
# stops itself; the loaded data stays in build/bench-gateway/milvus-standalone for the next run.
bench-query: install
	$(PY) -m bench.query

# The cost curve (docs/search-at-scale.md): 10k, 100k and 300k videos; add 1000000 to VIDEOS for the long option.
VIDEOS ?= 10000 100000 300000
bench-curve: install
	$(PY) -m bench.query --videos $(VIDEOS) --concurrency 1 16 --no-bare --plot docs/query-cost.png

# Every speed benchmark in turn (encoders, ingest, gateway, query), then one summary table.
bench: install
	$(PY) -m bench.run_all

# Retrieval quality per level and fused, through the real stack; --calibrate searches the fusion weights.
eval: install
	$(VENV)/bin/vidstrata eval --calibrate --report docs/

clean:
	rm -rf $(VENV) build data
