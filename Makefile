# The whole set-up lives here: `make up` runs the service, `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PROTO_DIR := gateway/proto
PROTO := $(PROTO_DIR)/vidstrata/v1/search.proto
PYTEST_ARGS ?=
# Installs come from the lock: every Python package pinned with its hashes, so a fresh clone gets exactly what the
# tests passed with. `make lock` rewrites it on purpose; `make test-latest` tries the newest versions the ranges allow.
LOCK := requirements.lock
MILVUS_LOCK := vidstrata/stack/requirements-milvus-standalone.txt
UV_VERSION := 0.13.10
# What the lock adds to pyproject's ranges: the CPU build of torch (never a multi-GB CUDA build; pip finds it
# through PIP_FIND_LINKS or PIP_EXTRA_INDEX_URL) and the build backend of the editable install.
LOCK_PINS := 'torch==2.13.0+cpu' 'setuptools>=69'
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_35 --generate-hashes --custom-compile-command "make lock"
# RESOLVE=latest (set by test-latest) installs the newest allowed versions instead of the lock, torch kept at the lock's.
RESOLVE ?= lock
TORCH_PIN := $(shell sed -n 's/^\(torch==[^ ]*\).*/\1/p' $(LOCK))
LATEST_TREE := build/latest
# name==version lines with the names in PEP 503 form (lower case, '-' for '_' and '.'), sorted
NORMALIZE_NAMES := sed -E 'h; s/==.*//; y/ABCDEFGHIJKLMNOPQRSTUVWXYZ_./abcdefghijklmnopqrstuvwxyz--/; G; s/\n[^=]*//' | sort

.PHONY: install proto wheels clean-wheel-builds lint-imports test test-fast test-latest lock up docs model-repository bench bench-encoders bench-ingest bench-gateway bench-query bench-curve bench-near-duplicates eval system-deps clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Two distributions from this tree, both editable: vidstrata-client (client/) and the server (.), which needs it.
$(STAMP): $(LOCK) pyproject.toml client/pyproject.toml | $(PY)
ifeq ($(RESOLVE),latest)
	$(PIP) install -q --upgrade --upgrade-strategy eager "$(TORCH_PIN)" -e ./client -e ".[dev]"
else
	$(PIP) install -q --require-hashes --no-deps -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PIP) install -q --no-deps --no-build-isolation -e ./client
endif
	$(PIP) check
	touch $(STAMP)

# Re-resolves pyproject's ranges into the lock (server, dev tools) and the Milvus 2.3.5 standalone's own venv.
lock: | $(PY)
	$(PIP) install -q "uv==$(UV_VERSION)"
	printf '%s\n' $(LOCK_PINS) ./client | $(VENV)/bin/uv pip compile pyproject.toml - --extra dev $(LOCK_TARGET) \
	  --no-emit-package vidstrata-client $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS)) -o $(LOCK)
	printf 'milvus==2.3.5\n' | $(VENV)/bin/uv pip compile - $(LOCK_TARGET) -o $(MILVUS_LOCK)

install: $(STAMP) proto system-deps

# Stubs are generated from the .proto into the client's `vidstrata.v1` package, never edited by hand.
proto: $(STAMP)
	@if [ -f $(PROTO) ]; then $(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=client --grpc_python_out=client --pyi_out=client $(PROTO); fi

# The two wheels a deployment installs: vidstrata-client alone for a product backend, both for the server.
wheels: proto clean-wheel-builds
	$(PIP) wheel -q --no-deps --no-build-isolation -w dist ./client .

# setuptools keeps what it copied (build/lib) and listed (*.egg-info/SOURCES.txt) before: a module moved or removed
# would stay in the wheel.
clean-wheel-builds:
	rm -rf build/lib build/bdist.* client/build *.egg-info client/*.egg-info

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

# The fast suite on the newest versions pyproject allows, in a copy of the tree (its own venv and generated stubs),
# then the packages whose version differs from the lock: drift shows here before a user meets it.
test-latest: system-deps
	rm -rf $(LATEST_TREE) && mkdir -p $(LATEST_TREE)
	git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C $(LATEST_TREE)
	$(MAKE) -C $(LATEST_TREE) test-fast RESOLVE=latest
	@$(LATEST_TREE)/$(VENV)/bin/python -m pip freeze --exclude-editable | $(NORMALIZE_NAMES) > $(LATEST_TREE)/latest.txt
	@sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' $(LOCK) | $(NORMALIZE_NAMES) > $(LATEST_TREE)/locked.txt
	@echo "versions that differ from $(LOCK) (< locked, > latest):"; \
	  diff $(LATEST_TREE)/locked.txt $(LATEST_TREE)/latest.txt | grep '^[<>]' || echo "  none"

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

# Video-to-video search: copies of 27 videos (re-encoded, trimmed, rescaled, re-cropped, combined) through the real
# stack; calibrates near_duplicate_threshold against unrelated videos into docs/near-duplicates/ (about 160 ingests).
bench-near-duplicates: install
	$(PY) -m bench.near_duplicates

# Every speed benchmark in turn (encoders, ingest, gateway, query), then one summary table.
bench: install
	$(PY) -m bench.run_all

# Retrieval quality per level and fused, through the real stack; --calibrate searches the fusion weights.
eval: install
	$(VENV)/bin/vidstrata eval --calibrate --report docs/

clean:
	rm -rf $(VENV) build data
