"""The aarm-pdp config files deploy/ ships parse with no unknown or mistyped setting."""

from __future__ import annotations

import re
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


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2 and " AS build" in froms[0]
    final = lines[lines.index(froms[-1]) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(line.startswith("HEALTHCHECK ") for line in final)
    # The base: an exact patch release, pinned by digest.
    (arg,) = [line for line in lines if line.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", arg)
    # Every stage builds from that pinned base, never from a floating tag.
    assert all(line.split()[1] == "${PYTHON_IMAGE}" for line in froms)
