"""Where things are in the checkout (tests, conformance and bench all run from the repo root)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGO = ROOT / "rego"
"""The reference policy pack."""
POLICIES = ROOT / "tests" / "integration" / "policies"
"""Small broken or slow policies the fail-closed tests load."""
CASES = ROOT / "tests" / "cases"
BIN = ROOT / "bin"
"""Tools `make setup` builds (opa, buf, grpcurl)."""
