# aarm-pdp task runner. `make` alone prints the menu.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := bin
OPA    := $(BIN)/opa
BUF    := $(BIN)/buf
GRPCURL := $(BIN)/grpcurl
KUSTOMIZE := $(BIN)/kustomize
PROMTOOL := $(BIN)/promtool
# The compose-spec JSON schema as the docker-compose package ships it (PyPI; only the
# schema file is used, the package is not installed).
COMPOSE_SPEC := $(VENV)/compose-spec/compose_spec.json
# Pinned in tools/go.mod (checksums in tools/go.sum); named here for the menu and images.
OPA_VERSION := v1.22.3
BUF_VERSION := v1.75.0
export GOFLAGS := -mod=readonly
export GOTOOLCHAIN := local

PY_DIRS := $(wildcard service tests scripts bench conformance client faults)
PROTO_FILES := $(shell find proto -name '*.proto' | sort)
GEN_DIR := gen/python
# The client package's own copy of the stubs (client/gen.sh), checked by gen-check too.
CLIENT_GEN := client/src/aarm_pdp_client/_gen
# The API as released: one buf image per release, proto/releases/vX.Y.Z.binpb, written
# by `make proto-release VERSION=vX.Y.Z` and committed with the release. `buf breaking`
# runs against the newest image rather than a git tag (`.git#tag=...`): a committed image
# works in any checkout (fresh or shallow clone, no tags fetched, a tarball) and offline.
# Compare against something else with BREAKING_AGAINST='.git#tag=v0.1.0' or '.git#branch=main'.
PROTO_RELEASES := proto/releases
PROTO_BASELINE := $(shell ls $(PROTO_RELEASES)/v*.binpb 2>/dev/null | sort -V | tail -n 1)
BREAKING_AGAINST ?= $(PROTO_BASELINE)

.PHONY: deploy-check help setup run test client-test unit integration lint fmt gen gen-check proto-breaking proto-release rego-check rego-test check clean containers-test

help: ## this menu
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e './client[openai-agents,langchain,test]'
	touch $@

$(OPA): tools/go.mod tools/go.sum
	cd tools && go build -trimpath -o ../$(OPA) github.com/open-policy-agent/opa
$(BUF): tools/go.mod tools/go.sum
	cd tools && go build -trimpath -o ../$(BUF) github.com/bufbuild/buf/cmd/buf
$(GRPCURL): tools/go.mod tools/go.sum
	cd tools && go build -trimpath -o ../$(GRPCURL) github.com/fullstorydev/grpcurl/cmd/grpcurl

$(KUSTOMIZE): tools/go.mod tools/go.sum
	cd tools && go build -trimpath -o ../$(KUSTOMIZE) sigs.k8s.io/kustomize/kustomize/v5
# remove_all_sd: without the cloud service-discovery plugins (AWS, Azure, GCE, ...), which
# the rule tests never use and which are most of its build time.
$(PROMTOOL): tools/go.mod tools/go.sum
	cd tools && go build -tags remove_all_sd -trimpath -o ../$(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool
$(COMPOSE_SPEC): | $(VENV)/.installed
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(PY) -m pip download -q --no-deps -d $$tmp docker-compose==1.29.2 && \
	  mkdir -p $(dir $@) && $(PY) -c 'import glob, sys, zipfile; \
	    open(sys.argv[1], "wb").write(zipfile.ZipFile(glob.glob(sys.argv[2])[0]).read("compose/config/compose_spec.json"))' \
	    $@ "$$tmp/*.whl"

DEPLOY_OVERLAYS := $(wildcard deploy/k8s/overlays/*)
deploy-check: $(VENV)/.installed $(KUSTOMIZE) $(PROMTOOL) $(COMPOSE_SPEC) ## deploy/ without Docker or a cluster: kustomize + strict schemas, promtool tests, compose schema
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && for o in $(DEPLOY_OVERLAYS); do \
	  $(KUSTOMIZE) build $$o > $$tmp/$$(basename $$o).yaml && \
	  $(VENV)/bin/kubernetes-validate --strict --quiet $$tmp/$$(basename $$o).yaml && \
	  echo "$$o: kustomize build + kubernetes-validate --strict ok" || exit 1; done
	$(PROMTOOL) check rules deploy/prometheus/alerts.yaml
	$(PROMTOOL) check config --syntax-only deploy/prometheus/prometheus.yml
	cd deploy/prometheus && ../../$(PROMTOOL) test rules alerts_test.yaml
	$(PY) deploy/check_compose.py $(COMPOSE_SPEC) deploy/compose.yaml
	$(VENV)/bin/pytest -q tests/unit/test_config_file.py tests/unit/test_deploy_configs.py \
	  tests/unit/test_deploy_observability.py tests/unit/test_log_format.py

setup: $(VENV)/.installed $(OPA) $(BUF) $(GRPCURL) ## venv + dev deps, build opa/buf/grpcurl into ./bin (reused when present)

run: setup ## serve on the embedded defaults (managed OPA, gRPC :50051, metrics :9464)
	$(VENV)/bin/aarm-pdp serve --log-format text

gen: setup ## format the protos and regenerate gen/python
	$(BUF) format -w proto
	$(BUF) lint
	rm -rf $(GEN_DIR)/aarm && mkdir -p $(GEN_DIR)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(GEN_DIR) --pyi_out=$(GEN_DIR) \
		--grpc_python_out=$(GEN_DIR) $(PROTO_FILES)
	rm -rf $(CLIENT_GEN) && client/gen.sh $(PY) $(CLIENT_GEN) && touch $(CLIENT_GEN)/__init__.py

gen-check: setup ## regenerate into a scratch dir; fail on any drift from the committed code
	@$(BUF) lint
	@test -z "$$($(BUF) format -d proto)" || { echo "proto not buf-formatted: run make gen"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp \
	    --grpc_python_out=$$tmp $(PROTO_FILES) && \
	  diff -r -x __pycache__ -x '__init__.py' $$tmp/aarm $(GEN_DIR)/aarm && echo "generated code up to date"
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && client/gen.sh $(PY) $$tmp && \
	  diff -r -x __pycache__ $$tmp/aarm $(CLIENT_GEN)/aarm && echo "client stubs up to date"

proto-breaking: $(BUF) ## buf breaking (buf.yaml rules) against the last released API image
	@test -n "$(BREAKING_AGAINST)" || { echo "no released API image in $(PROTO_RELEASES)/"; exit 1; }
	$(BUF) breaking --against $(BREAKING_AGAINST)

proto-release: $(BUF) ## record the API as released: VERSION=vX.Y.Z, then commit the image and tag
	@[[ "$(VERSION)" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$$ ]] || { echo "usage: make proto-release VERSION=vX.Y.Z"; exit 1; }
	@test ! -e $(PROTO_RELEASES)/$(VERSION).binpb || { echo "$(VERSION) is already released"; exit 1; }
	@test -z "$(PROTO_BASELINE)" || \
	  test "$$(printf '%s\n' $(notdir $(PROTO_BASELINE:.binpb=)) $(VERSION) | sort -V | tail -n 1)" = $(VERSION) || \
	  { echo "$(VERSION) is not after $(notdir $(PROTO_BASELINE:.binpb=))"; exit 1; }
	$(BUF) lint
	@test -z "$(PROTO_BASELINE)" || $(BUF) breaking --against $(PROTO_BASELINE)
	@mkdir -p $(PROTO_RELEASES)
	$(BUF) build --exclude-source-info -o $(PROTO_RELEASES)/$(VERSION).binpb
	@echo "wrote $(PROTO_RELEASES)/$(VERSION).binpb: commit it with the $(VERSION) release"

lint: setup ## ruff, ruff format --check, mypy --strict, buf lint
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy
	cd client && ../$(VENV)/bin/mypy
	$(BUF) lint

fmt: setup ## apply ruff format and opa fmt
	$(VENV)/bin/ruff format $(PY_DIRS)
	$(VENV)/bin/ruff check --fix $(PY_DIRS)
	$(OPA) fmt -w rego

rego-check: setup ## opa fmt, opa check --strict (pinned capabilities), structure, opa test + coverage >= 90%
	@test -z "$$($(OPA) fmt --list rego)" || { echo "opa fmt would change:"; $(OPA) fmt --list rego; exit 1; }
	$(OPA) check --strict --capabilities rego/capabilities.json --schema rego/schemas rego
	$(PY) scripts/check_rego_structure.py
	$(OPA) test rego --coverage --threshold 90 --format json > /dev/null || \
	  { $(OPA) test rego -v | tail -40; echo "opa test failed or coverage < 90%"; exit 1; }
	@$(OPA) test rego --coverage --format json | $(PY) -c 'import json,sys; print("rego coverage %.1f%%" % json.load(sys.stdin)["coverage"])'
	$(OPA) test rego

unit: setup ## seconds: tests/unit + tests/api (in-process gRPC, fake policy engine); no OPA
	$(VENV)/bin/pytest -q tests/unit tests/api

integration: setup ## real opa processes, real sockets
	$(VENV)/bin/pytest -q -m integration tests/integration

test: setup gen-check lint proto-breaking rego-check client-test ## everything CI runs: drift, lint, API compat, rego, the client alone, unit + api + integration
	$(VENV)/bin/pytest -q -m "not containers" tests

client-test: $(VENV)/client-wheels/.stamp ## the client alone: a fresh venv with its wheel and declared deps, its tests
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	  $(PY) -m pip wheel -q --no-deps --no-build-isolation -w $$tmp/dist ./client && \
	  $(PYTHON) -m venv --without-pip $$tmp/venv && \
	  $(PY) -m pip --python $$tmp/venv/bin/python install -q --disable-pip-version-check \
	    --no-index --find-links $(VENV)/client-wheels --find-links $$tmp/dist 'aarm-pdp-client[test]' && \
	  $$tmp/venv/bin/python -c 'import importlib.metadata as m, re, sys; \
	    deps = {re.split("[<>=; ]", r)[0] for r in m.requires("aarm-pdp-client") if "extra ==" not in r}; \
	    sys.exit(f"client depends on {sorted(deps)}") if deps != {"grpcio", "protobuf"} else None' && \
	  cd client && $$tmp/venv/bin/python -m pytest -q -p no:cacheprovider tests

# The client's dependencies as wheels, fetched once from PyPI (again when its pins change).
$(VENV)/client-wheels/.stamp: client/pyproject.toml | $(VENV)/.installed
	rm -rf $(VENV)/client-wheels
	$(PY) -m pip wheel -q -w $(VENV)/client-wheels './client[test]'
	rm -f $(VENV)/client-wheels/aarm_pdp_client-*.whl
	touch $@

containers-test: setup ## opt-in: integration tests against the official OPA image (needs Docker)
	$(VENV)/bin/pip install -q -e '.[containers]'
	AARM_PDP_TEST_OPA=container $(VENV)/bin/pytest -q -m integration tests/integration

check: test ## alias: gen-check + lint + proto-breaking + rego-check + tests

-include bench/bench.mk
-include conformance/conformance.mk
-include faults/faults.mk

clean: ## remove the venv, built tools and caches
	rm -rf $(VENV) $(BIN) .pytest_cache .mypy_cache .ruff_cache
