# AARM conformance suite (issue 6). Included from the Makefile:  -include conformance/conformance.mk
CONFORMANCE_ARGS ?=

.PHONY: conformance

conformance: setup ## AARM conformance suite: rows 1-61, S01-S37 -> conformance/report.{md,json} (CONFORMANCE_ARGS=--target host:port)
	$(PY) -m conformance --report-dir conformance $(CONFORMANCE_ARGS)
