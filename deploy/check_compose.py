"""Validate deploy/compose.yaml against the compose-spec JSON schema (make deploy-check).

usage: check_compose.py SCHEMA COMPOSE_FILE
The schema is the compose_spec.json that the docker-compose package ships (PyPI); the
Makefile extracts it from that wheel. Interpolation (${VAR:-default}) is left as text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml


def main(schema_path: str, compose_path: str) -> int:
    schema = json.loads(Path(schema_path).read_text())
    doc = yaml.safe_load(Path(compose_path).read_text())
    if "name" in doc and "name" not in schema.get("properties", {}):
        doc = {k: v for k, v in doc.items() if k != "name"}  # newer top-level key
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft201909Validator)
    validator = cls(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for err in errors:
        where = "/".join(str(p) for p in err.path) or "(top)"
        print(f"{compose_path}: {where}: {err.message}", file=sys.stderr)
    if not errors:
        print(f"{compose_path}: valid against {Path(schema_path).name} ({schema.get('id', '')})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
