# Benchmark targets, included by the Makefile (`-include bench/bench.mk`).
# See docs/performance.md for what the lanes mean and the latest numbers.

.PHONY: bench bench-quick bench-analysis efficacy efficacy-check

bench: $(VENV)/.installed $(OPA) ## full benchmark (~25 min quiet, ~30 loaded): opa-direct, decide, stub, grpc-forward, opa-small lanes, c=1/8/32, open loop, catalogue, fair session-history and memory sweeps, profile; issue 18 ratios under "headline"
	$(PY) -m bench.run --mode full

bench-quick: $(VENV)/.installed $(OPA) ## quick benchmark (< 2 min): same lanes, shorter, no sweeps
	$(PY) -m bench.run --mode quick

bench-analysis: $(VENV)/.installed ## seconds: the analysis step alone, µs per decision over the evasion corpus (bench/analysis_cost.py)
	$(PY) bench/analysis_cost.py

# EFFICACY_ARGS: e.g. --only banking- or --explain banking-injected-001 or --source HEAD
efficacy: $(VENV)/.installed $(OPA) ## ~1 min: replay the efficacy corpus over gRPC against the real service, print and write bench/results/efficacy.json (bench/efficacy/README.md)
	$(PY) -m bench.efficacy.run $(EFFICACY_ARGS)

efficacy-check: $(VENV)/.installed $(OPA) ## make efficacy, exit 1 when an issue 13 target is missed (the CI regression check)
	$(PY) -m bench.efficacy.run --check $(EFFICACY_ARGS)
