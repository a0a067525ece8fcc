"""The aarm-pdp config files deploy/ ships parse with no unknown or mistyped setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from aarm_pdp import config_file

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FILES = [
    DEPLOY / "k8s" / "base" / "config.yaml",
    DEPLOY / "k8s" / "overlays" / "embedded-dev" / "config.yaml",
    DEPLOY / "compose" / "config.yaml",
]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_deploy_config_parses(path: Path) -> None:
    problems: list[str] = []
    cfg = config_file.read(path, problems)
    assert problems == []
    assert cfg.server.listen == "0.0.0.0:50051"  # reachable from outside the pod
    assert cfg.opa.url is not None  # OPA is its own container there
    assert cfg.metrics.listen == "0.0.0.0:9464"
    assert cfg.auth.principals_file is not None
    assert cfg.auth.tls or cfg.auth.insecure_listen
