# The fault matrix (issue 14 item 7). Included from the Makefile:  -include faults/faults.mk
FAULTS_ARGS ?=

.PHONY: faults

faults: $(VENV)/.installed $(OPA) ## ~3 min: the real service under OPA, store, disk, SIGKILL faults and overload waves -> table + bench/results/faults.json (docs/faults.md)
	$(PY) -m faults $(FAULTS_ARGS)
