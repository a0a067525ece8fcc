"""The configuration file: every setting settable, every problem reported at once,
flags and env over the file, the file over the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from aarm_pdp import cli, config_file
from aarm_pdp.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config.example.yaml"


def _serve(*argv: str) -> Config:
    return cli.config_from_args(cli._parser().parse_args(["serve", *argv]))


def test_the_example_names_every_setting() -> None:
    text = EXAMPLE.read_text()
    sections: set[str] = set()
    found: set[str] = set()
    current = ""
    for line in text.splitlines():
        if m := re.match(r"^(\w+):", line):
            current = m.group(1)
            sections.add(current)
        elif m := re.match(r"^  (?:# )?(\w+):", line):
            found.add(f"{current}.{m.group(1)}")
    assert sections == {s.split(".")[0] for s in config_file.settings()}
    assert set(config_file.settings()) <= found, sorted(set(config_file.settings()) - found)


def test_the_example_loads_and_validates() -> None:
    cfg = config_file.load(EXAMPLE)
    assert cfg.opa.policy_paths == (ROOT / "rego",)
    assert cfg.receipts.store == str(ROOT / "var" / "receipts.db")
    assert cfg.log.format == "auto"


def test_every_problem_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "server": {"listen": 5, "bogus": 1, "grace_seconds": -1},
                "nope": {},
                "session": {"state": "sqlite://x"},
                "log": {"level": "loud"},
                "telemetry": {"decisions": ["ALLOW", 3]},
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        config_file.load(bad)
    text = str(err.value)
    for part in (
        "server.listen: expected str",
        "server.bogus: unknown setting",
        "nope: unknown section",
        "telemetry.decisions[1]: expected str",
        "server.grace_seconds must be >= 0",
        "session.state must be 'memory'",
        "log.level must be",
    ):
        assert part in text, text


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("server: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_file.load(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        config_file.load(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        config_file.load(tmp_path / "missing.yaml")


def test_toml_too(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[approvals]\nwebhook_url = "https://hooks.example/approve"\n[log]\nlevel = "debug"\n'
    )
    cfg = config_file.load(f)
    assert cfg.approvals.webhook_url == "https://hooks.example/approve"
    assert cfg.log.level == "debug"


def test_settings_without_flags_are_settable(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "approvals: {webhook_url: 'https://hooks.example/a', token_ttl_seconds: 60}\n"
        "session: {ttl_seconds: 120, max_state_bytes: 1024, log_window_bytes: 2048}\n"
        "limits: {max_depth: 8}\n"
        "opa: {entrypoint: aarm/main/decision, health_interval_seconds: 0.5}\n"
        "receipts: {key_dir: keys}\n"
    )
    cfg = _serve("--config", str(f))
    assert cfg.approvals.webhook_url == "https://hooks.example/a"
    assert cfg.approvals.token_ttl_seconds == 60
    assert (cfg.session.ttl_seconds, cfg.limits.max_depth) == (120, 8)
    assert cfg.opa.health_interval_seconds == 0.5
    assert cfg.receipts.key_dir == tmp_path / "keys"  # relative to the file


def test_env_and_flags_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "server: {listen: '127.0.0.1:7000', event_loop: asyncio}\n"
        "log: {level: warning, format: text}\n"
        "metrics: {listen: '127.0.0.1:7001'}\n"
        "approvals: {webhook_url: 'https://file.example/a'}\n"
    )
    cfg = _serve("--config", str(f))
    assert (cfg.server.listen, cfg.server.event_loop) == ("127.0.0.1:7000", "asyncio")
    assert (cfg.log.level, cfg.log.format, cfg.metrics.listen) == (
        "warning",
        "text",
        "127.0.0.1:7001",
    )
    monkeypatch.setenv("AARM_PDP_LISTEN", "127.0.0.1:7100")
    monkeypatch.setenv("AARM_PDP_LOG_LEVEL", "debug")
    monkeypatch.setenv("AARM_PDP_APPROVAL_WEBHOOK", "https://env.example/a")
    cfg = _serve("--config", str(f))
    assert (cfg.server.listen, cfg.log.level) == ("127.0.0.1:7100", "debug")
    assert cfg.approvals.webhook_url == "https://env.example/a"
    assert cfg.server.event_loop == "asyncio"  # not given by env: the file's
    cfg = _serve("--config", str(f), "--listen", "127.0.0.1:7200", "--log-format", "json")
    assert (cfg.server.listen, cfg.log.format) == ("127.0.0.1:7200", "json")


def test_config_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("decision: {idempotency_entries: 7}\n")
    monkeypatch.setenv("AARM_PDP_CONFIG", str(f))
    assert _serve().decision.idempotency_entries == 7


def test_file_and_validation_problems_together(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server: {reflection: 'yes'}\n")
    with pytest.raises(ConfigError) as err:
        _serve("--config", str(f), "--listen", "nonsense")
    assert "server.reflection: expected bool" in str(err.value)
    assert "server.listen 'nonsense' is not host:port" in str(err.value)


def test_without_a_file_the_defaults() -> None:
    cfg = _serve()
    assert cfg.server.listen == Config().server.listen
    assert cfg.log.format == "auto"
