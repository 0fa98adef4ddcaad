# The user interface of this repository: `make help` lists the targets.
# Everything runs from the project's own virtual environment in .venv/ (created by `make setup`).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQUIREMENTS := $(wildcard requirements/*.txt)

MODEL ?= NextViT_small_224
VARIANT ?= portable
REPOSITORY ?= build/model_repository/$(VARIANT)
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002

.DEFAULT_GOAL := help
.PHONY: help setup export serve demo classify test test-all lint clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the pinned dependencies (idempotent)

$(STAMP): $(REQUIREMENTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/paddleclas.txt
	@touch $@

export: setup ## export MODEL (default NextViT_small_224) with random weights; ARGS= to override the source
	$(PY) -m export $(MODEL) $(or $(ARGS),--random-weights) --variant $(VARIANT) --repository $(REPOSITORY)

serve: setup ## run tritonserver in the foreground on REPOSITORY (ports HTTP_PORT/GRPC_PORT/METRICS_PORT)
	$(PY) -m model_repository.server --repository $(REPOSITORY) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

demo: setup ## export NextViT_small_224, start a local server, classify the sample photos over gRPC, stop
	$(PY) -m client.demo --model $(MODEL) --repository $(REPOSITORY) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

classify: setup ## classify IMAGES (files or folders) with a running server: make classify IMAGES=photos/
	$(PY) -m client classify $(IMAGES) --model $(shell echo $(MODEL) | tr A-Z a-z) --url 127.0.0.1:$(GRPC_PORT)

test: setup ## the test suite CI runs (real tritonserver, real paddle2onnx; skips `slow`)
	$(PY) -m pytest -m "not slow" -q

test-all: setup ## every test, including all 19 catalog models
	$(PY) -m pytest -q

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean: ## remove build outputs (exported models, repositories); keeps .venv
	rm -rf build .pytest_cache

# Helm chart (helm/)
.PHONY: chart-test chart-docs
chart-test: setup ## render, lint and validate the Helm chart for every helm/paddleclas-triton/ci value set (no server)
	$(PY) -m pytest tests/chart -m "not server" -q
chart-docs: setup ## regenerate the values table in helm/README.md from values.yaml
	$(PY) helm/gen_values_table.py
