# The user interface of this repository: `make help` lists the targets.
# Everything runs from the project's own virtual environment in .venv/ (created by `make setup`).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQUIREMENTS := $(wildcard requirements/*.txt)

# Prometheus for tests/server/test_prometheus.py: Debian's package, unpacked (binary only, no service started).
PROMETHEUS_DIR := $(VENV)/prometheus
PROMETHEUS := $(PROMETHEUS_DIR)/usr/bin/prometheus
# nginx for tests/server/test_gateway.py (the chart's gateway): Debian's package, unpacked the same way.
NGINX_DIR := $(VENV)/nginx
NGINX := $(NGINX_DIR)/usr/sbin/nginx

# The near-exact resize tier's pillow-simd, in a folder of its own (requirements/pillow-simd.txt says why).
PILLOW_SIMD_DIR := $(VENV)/pillow-simd
PILLOW_SIMD := $(PILLOW_SIMD_DIR)/PIL/__init__.py
PILLOW_SIMD_BUILD := gcc libjpeg-dev zlib1g-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

MODEL ?= NextViT_small_224
VARIANT ?= portable
REPOSITORY ?= build/model_repository/$(VARIANT)
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
MODELS ?=
CORES ?= auto
OUT ?= build/serving/$(VARIANT)

.DEFAULT_GOAL := help
.PHONY: help setup export serve demo classify test test-unit test-all lint remove render clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The local server preloads tcmalloc into tritonserver and its steps, as production does
# (model_repository/memory.py); jemalloc is there for `--malloc jemalloc` comparisons.
MALLOC_LIBRARY := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
MALLOC_PACKAGES := libtcmalloc-minimal4 libjemalloc2

setup: $(STAMP) $(PROMETHEUS) $(NGINX) $(MALLOC_LIBRARY) $(PILLOW_SIMD) ## create .venv and install the pinned dependencies (idempotent)

$(MALLOC_LIBRARY):
	$(SUDO) apt-get install -y -q $(MALLOC_PACKAGES) || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(MALLOC_PACKAGES); }

$(STAMP): $(REQUIREMENTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/paddleclas.txt
	rm -rf $(VENV)/newer-release
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/newer-release -r requirements/newer-release.txt
	@touch $@

# pillow-simd built from source with AVX2 (about a minute on 2 cores); the compiler and headers come from
# Debian when missing (python3-dev only for a Python without its own headers).
$(PILLOW_SIMD): requirements/pillow-simd.txt | $(STAMP)
	@packages="$(PILLOW_SIMD_BUILD)"; \
	test -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" || packages="$$packages python3-dev"; \
	dpkg -s $$packages >/dev/null 2>&1 || $(SUDO) apt-get install -y -q $$packages || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$packages; }
	rm -rf $(PILLOW_SIMD_DIR)
	CC="cc -mavx2" $(PY) -m pip install --quiet --no-cache-dir --no-deps --no-binary pillow-simd \
		--target $(PILLOW_SIMD_DIR) -r requirements/pillow-simd.txt
	PYTHONPATH=$(PILLOW_SIMD_DIR) $(PY) -c 'import PIL.Image as i; print("pillow-simd", i.__version__, i.__file__)'
	@touch $@

# apt-get download needs no root; an old package list (a fresh machine) is refreshed once, then retried.
$(PROMETHEUS): | $(STAMP)
	rm -rf $(PROMETHEUS_DIR) && mkdir -p $(PROMETHEUS_DIR)
	cd $(PROMETHEUS_DIR) && { apt-get download prometheus || { $(SUDO) apt-get update && apt-get download prometheus; }; }
	dpkg-deb -x $(PROMETHEUS_DIR)/prometheus_*.deb $(PROMETHEUS_DIR) && rm $(PROMETHEUS_DIR)/prometheus_*.deb
	$@ --version | head -1
	@touch $@

$(NGINX): | $(STAMP)
	rm -rf $(NGINX_DIR) && mkdir -p $(NGINX_DIR)
	cd $(NGINX_DIR) && { apt-get download nginx || { $(SUDO) apt-get update && apt-get download nginx; }; }
	dpkg-deb -x $(NGINX_DIR)/nginx_*.deb $(NGINX_DIR) && rm $(NGINX_DIR)/nginx_*.deb
	$@ -v
	@touch $@

export: setup ## export MODEL (default NextViT_small_224) with random weights; ARGS= to override the source
	$(PY) -m export $(MODEL) $(or $(ARGS),--random-weights) --variant $(VARIANT) --repository $(REPOSITORY)

serve: setup ## run tritonserver on REPOSITORY (MODELS="a b" to select, CORES=N to size; SERVE_ARGS= more)
	$(PY) -m model_repository serve --repository $(REPOSITORY) $(if $(MODELS),--models $(MODELS)) \
		--cores $(CORES) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) $(SERVE_ARGS)

demo: setup ## export NextViT_small_224, start a local server, classify the sample photos over gRPC, stop
	$(PY) -m demo --model $(MODEL) --repository $(REPOSITORY) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

classify: setup ## classify IMAGES (files or folders) with a running server: make classify IMAGES=photos/
	$(PY) -m client classify $(IMAGES) --model $(shell echo $(MODEL) | tr A-Z a-z) --url 127.0.0.1:$(GRPC_PORT)

test: setup ## the test suite CI runs (real tritonserver, real paddle2onnx; skips `slow`)
	$(PY) -m pytest -m "not slow" -q

test-unit: setup ## every test that needs neither a server nor an export (tests/unit, chart, unit parts), on all cores
	$(PY) -m pytest -m "not server and not export and not slow" -q -n auto

test-all: setup ## every test, including all 19 catalog models
	$(PY) -m pytest -q

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

remove: setup ## remove MODEL from REPOSITORY (its shared steps stay while another model uses them)
	$(PY) -m model_repository remove $(MODEL) --repository $(REPOSITORY)

render: setup ## write REPOSITORY's serving copy, every config rendered for CORES, into OUT (object storage)
	$(PY) -m model_repository render --repository $(REPOSITORY) --out $(OUT) --cores $(CORES) $(if $(MODELS),--models $(MODELS))

clean: ## remove build outputs (exported models, repositories); keeps .venv
	rm -rf build .pytest_cache

# Helm chart (helm/)
.PHONY: chart-test chart-docs
chart-test: setup ## render, lint and validate the Helm chart for every helm/paddleclas-triton/ci value set (no server)
	$(PY) -m pytest tests/chart -m "not server" -q
chart-docs: docs ## regenerate the values table in helm/README.md from values.yaml (part of make docs)

# Preprocessing (preprocess/)
.PHONY: bench-preprocess bench-resize-tier
bench-preprocess: setup ## benchmark: ms per image (decode, resize, network), exact vs fast decode vs client-side crops; docs/preprocessing.md
	$(PY) -m perf preprocess --repository $(REPOSITORY) --out $(PERF_DIR)/preprocess --publish

bench-resize-tier: setup ## benchmark: near-exact resize tier (pillow-simd) vs exact, every exported Pillow-resized model; docs/preprocessing.md
	nice -n 10 $(PY) -m perf resize-tier --repository $(REPOSITORY) --out $(PERF_DIR)/resize-tier --publish

# Performance (perf/)
# Without URL, perf and load start a local tritonserver on free ports serving REPOSITORY's models (exporting
# them into it first if they are missing) and stop it afterwards; with URL=host:8001 they measure
# that server instead (a cluster's gRPC endpoint; METRICS_URL defaults to the same host, port 8002).
PERF_DIR ?= build/perf
PERF_MODELS ?= NextViT_small_224 ViT_base_patch16_224
PERF_PROFILE ?= full
URL ?=
METRICS_URL ?=
LOAD_STEP_USERS ?= 2
LOAD_STEP_SECONDS ?= 20
LOAD_STEPS ?= 4
PERF_SERVER = $(if $(URL),--url $(URL)) $(if $(METRICS_URL),--metrics-url $(METRICS_URL))
.PHONY: perf perf-report perf-publish load

perf: setup ## benchmark: perf_analyzer concurrency sweep over gRPC + report in build/perf (URL=host:8001: a running server)
	$(PY) -m perf run --models $(PERF_MODELS) --repository $(REPOSITORY) --out $(PERF_DIR) \
		--profile $(PERF_PROFILE) $(PERF_SERVER)

perf-report: setup ## redraw build/perf/report.md and its plots from the last run's raw data
	$(PY) -m perf report --out $(PERF_DIR)

perf-publish: setup ## the last report into the generated block of docs/performance.md, its plots into docs/img/
	$(PY) -m perf report --out $(PERF_DIR) --publish

load: setup ## benchmark: Locust step load over gRPC, headless; CSV stats, failures by cause in build/perf/load (URL= too)
	$(PY) -m perf load --model $(MODEL) --repository $(REPOSITORY) --out $(PERF_DIR)/load \
		--step-users $(LOAD_STEP_USERS) --step-seconds $(LOAD_STEP_SECONDS) --steps $(LOAD_STEPS) $(PERF_SERVER)

# Operations (docs/operations.md): Triton Model Analyzer in its own environment, the response cache benchmark
MA_VENV := $(VENV)/model-analyzer
MA_STAMP := $(MA_VENV)/.installed
ANALYZE_DIR ?= build/analyze
LATENCY_BUDGET_MS ?= 500
ANALYZE_ARGS ?=
.PHONY: analyze bench-cache

$(MA_STAMP): requirements/model-analyzer.txt
	@test -x $(MA_VENV)/bin/python || $(PYTHON) -m venv $(MA_VENV)
	$(MA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MA_VENV)/bin/python -m pip install --quiet -r requirements/model-analyzer.txt
	@touch $@

analyze: setup $(MA_STAMP) ## Model Analyzer on MODEL, local CPU: quick search of the ensemble + network sweep (URL= remote, experimental); build/analyze
	$(PY) -m perf analyze --model $(MODEL) --repository $(REPOSITORY) --out $(ANALYZE_DIR) \
		--latency-budget-ms $(LATENCY_BUDGET_MS) $(PERF_SERVER) $(ANALYZE_ARGS)

.PHONY: bench-allocators
bench-allocators: setup ## benchmark: CPU per camera-photo crop and memory kept, per allocator; docs/reliability.md "Memory"
	$(PY) -m perf allocators

bench-cache: setup ## benchmark: response cache hit vs miss latency, memory per cached answer (local server); docs/operations.md
	$(PY) -m perf cache --model $(MODEL) --repository $(REPOSITORY) --out $(PERF_DIR)/cache --publish

# Generated docs (docs/blocks.py): the blocks made from committed files; benchmark blocks come from their targets
.PHONY: docs
docs: setup ## rewrite the generated blocks made from committed files (helm values and GPU cores tables, catalog table, the chart's plan build estimates)
	$(PY) -m docs.blocks
	$(PY) helm/gen_trt_build_seconds.py

# Export (export/)
# Every catalog model, official downloads, TensorRT, and the generated docs/models.md.
KIND ?= inference
MIRROR ?=
PRODUCTION_REPOSITORY ?= build/model_repository/production
SERVER_TRT ?=
FP16_PRICE ?= build/fp16-price/results.json
.PHONY: export-all docs-models download trt-plans gpu-memory gpu-memory-chart fp16-price

export-all: setup ## export all 19 catalog models (random weights) into REPOSITORY, one process each
	@set -e; for name in $$($(PY) -m export --list); do \
		$(PY) -m export $$name --random-weights --variant $(VARIANT) --repository $(REPOSITORY); \
	done

docs-models: setup ## regenerate docs/models.md from the catalog, REPOSITORY's export records and FP16_PRICE
	$(PY) -m export report --repository $(REPOSITORY) --output docs/models.md --fp16-price $(FP16_PRICE)

fp16-price: setup ## benchmark: FP16 network against FP32 in ONNX Runtime CPU, every model of PRODUCTION_REPOSITORY (~30 min, 2 cores)
	nice -n 10 $(PY) -m export fp16-price --repository $(PRODUCTION_REPOSITORY) --output $(FP16_PRICE)

gpu-memory: setup ## record each network's GPU memory estimate in REPOSITORY's export records (no re-export; configs follow at the next start)
	$(PY) -m export memory --repository $(REPOSITORY)

gpu-memory-chart: setup ## the chart's files/network-memory.json from REPOSITORY's records (every model exported)
	$(PY) -m export memory --repository $(REPOSITORY) --chart

download: setup ## fetch MODEL's official file into build/downloads (KIND=inference|weights, MIRROR=base URL)
	$(PY) -m export $(MODEL) --download $(KIND) --download-only $(if $(MIRROR),--mirror $(MIRROR))

trt-plans: setup ## build MODEL's TensorRT plan into PRODUCTION_REPOSITORY (needs trtexec + GPU: TensorRT image)
	$(PY) -m export $(MODEL) --variant production --trt --repository $(PRODUCTION_REPOSITORY) \
		$(if $(SERVER_TRT),--server-tensorrt-version $(SERVER_TRT))

# Capacity: one served preprocess instance per core, processes and memory, warmup; docs/capacity.md
.PHONY: bench-capacity
bench-capacity: setup ## benchmark: CPU ms per served image per tier and size, cores per GPU, processes, warmup; docs/capacity.md
	$(PY) -m perf capacity --repository $(REPOSITORY) --out $(PERF_DIR)/capacity --publish

# Reliability drills: overload, SIGTERM drain, killed step, soak, slow clients, request floods and huge images
# (memory); docs/reliability.md
DRILLS ?=
DRILL_ARGS ?=
.PHONY: drills
drills: setup ## benchmark: overload 10x, SIGTERM, killed step, soak, slow clients, floods, huge images vs a local server; docs/reliability.md
	$(PY) -m perf drills $(DRILLS) --model $(MODEL) --repository $(REPOSITORY) --out $(PERF_DIR)/drills --publish $(DRILL_ARGS)

# Evaluation: top-1/top-5 on a labelled set against a running server, vs the published figures
LIST ?=
ROOT ?=
EVALUATE_ARGS ?=
.PHONY: evaluate
evaluate: setup ## top-1/top-5 of MODEL on LIST (val_list.txt or synset folders; ROOT=, URL=host:8001, EVALUATE_ARGS=)
	$(PY) -m client evaluate $(LIST) $(if $(ROOT),--root $(ROOT)) --model $(MODEL) \
		--url $(or $(URL),127.0.0.1:$(GRPC_PORT)) $(EVALUATE_ARGS)
