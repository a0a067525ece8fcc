"""Session state written by other versions decodes: fields it lacks default, unknown ones go."""

from __future__ import annotations

import orjson
import pytest
from aarm_pdp.config import Config, ConfigError, SessionConfig
from aarm_pdp.session import state as st


def test_older_blob_without_derived_scope_and_with_retired_fields() -> None:
    state = st.new_session(
        "s-1",
        tenant="acme",
        human="h",
        service="svc",
        agent="a",
        now_ns=1,
        original=st.OriginalRequest(text="pay the invoice"),
    )
    doc = orjson.loads(state.to_json())  # version 1, as earlier versions wrote it
    del doc["drift_outside"]
    del doc["original"]["derived_scope"]
    doc.update(sem_last=0.4, sem_max=0.4, sem_ema=0.4)  # the retired semantic score
    doc["original"]["from_a_newer_version"] = ["x"]
    back = st.SessionState.from_bytes(orjson.dumps(doc))
    assert back.drift_outside == []
    assert back.original == st.OriginalRequest(text="pay the invoice")
    assert not hasattr(back, "sem_last")


def test_derived_scope_round_trips_and_reaches_the_input() -> None:
    original = st.OriginalRequest(text="pay the invoice", derived_scope=["financial", "read"])
    state = st.new_session(
        "s-2", tenant="acme", human="h", service="svc", agent="a", now_ns=1, original=original
    )
    state.drift_outside = ["security_control"]
    back = st.SessionState.from_bytes(state.to_bytes())
    assert back.original is not None and back.original.derived_scope == ["financial", "read"]
    assert back.drift_outside == ["security_control"]
    summary = st.summary(back, 2)
    assert summary["original_request"]["derived_scope"] == ["financial", "read"]


def test_state_version_1_writes_the_json_older_versions_read() -> None:
    state = st.new_session("s-3", tenant="acme", human="h", service="svc", agent="a", now_ns=1)
    assert state.to_bytes()[:1] == bytes([2])
    old = state.to_bytes(1)
    assert old == state.to_json() and old[:1] == b"{"
    assert st.SessionState.from_bytes(old) == st.SessionState.from_bytes(state.to_bytes())


def test_only_state_versions_1_and_2_are_accepted() -> None:
    Config(session=SessionConfig(state_version=1)).validate()
    with pytest.raises(ConfigError, match=r"session\.state_version"):
        Config(session=SessionConfig(state_version=3)).validate()
