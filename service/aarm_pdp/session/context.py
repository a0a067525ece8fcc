"""The context accumulator: what Decide needs from the session, and what it leaves.

``prepare`` reads the session (one store round trip) and computes, with pure
functions, ``input.session``, ``input.dependencies``, ``input.provenance`` and
``input.drift``. ``commit`` records the decided action atomically. The session RPCs
(start, outcome, end) live here too. Store failures raise
:class:`~aarm_pdp.errors.SessionStoreUnavailable`; the engine turns them into DENY.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aarm_pdp.drift.scope import derive_scope
from aarm_pdp.drift.score import DriftWeights, score
from aarm_pdp.errors import ErrorCode, IdentityRejected, SessionConflict, SessionNotFound
from aarm_pdp.model.decision import DecisionResult
from aarm_pdp.model.levels import level
from aarm_pdp.model.request import ActionRequest, Identity
from aarm_pdp.provenance import classify as prov
from aarm_pdp.provenance.indicators import fingerprint
from aarm_pdp.session import state as st
from aarm_pdp.session.catalogue import Catalogue
from aarm_pdp.session.store import SessionStore, log_record, session_key

DECODED_CACHE_SIZE = 256
_ARTIFACT_KINDS = ("path", "url")
_WRITE_CATEGORIES = ("write", "external_communication")
_RAN = ("ALLOW", "MODIFY")
"""Verdicts that let an action run (an approved STEP_UP runs as its own ALLOW)."""


@dataclass
class Prepared:
    """What ``prepare`` computed, carried to ``commit``."""

    key: str
    input_parts: dict[str, Any]
    category: str
    artifacts: list[str] = field(default_factory=list)
    artifact_level: int = -1
    context_hash: str = ""


INLINE_INDEX_CHARS = 512
"""Texts up to this many characters in all are fingerprinted on the event loop (a
40-character output costs about what a hop to a worker thread does: docs/performance.md,
"Memory bounds"); longer ones (an output of up to 64 KiB plus 256 values: ~0.2 s) in a
worker thread, so one large RecordOutcome or StartSession does not stall the decisions
of every other session."""


async def _fingerprints(texts: list[str]) -> set[str]:
    """:func:`~aarm_pdp.provenance.classify.fingerprints_of`, off the loop when large."""
    if sum(map(len, texts)) <= INLINE_INDEX_CHARS:
        return prov.fingerprints_of(texts)
    return await asyncio.to_thread(prov.fingerprints_of, texts)


def _log_bytes(entry: dict[str, Any]) -> list[bytes]:
    """The log entry ``st.chain`` just linked (every entry here is), as the store takes it."""
    return [log_record(entry, chained=True)]


class DecodedStates:
    """The last decoded state of recently used sessions, each tied to its exact blob.

    A Decide reads the session in ``prepare`` and updates it in ``commit``; both would
    decode the same JSON blob, and the next Decide in the session decodes the blob the
    last one wrote. Holding the decoded state next to the blob it equals saves those
    decodes; a blob written by anyone else (another RPC, another replica through
    Redis, an expiry) no longer equals the cached one, so it is decoded as before.
    ``peek`` is for reading; ``take`` removes the entry, so a state about to be changed
    is never also served to a reader. Bounded (LRU): the memory cost is constant.
    """

    def __init__(self, size: int = DECODED_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[bytes, st.SessionState]] = OrderedDict()

    def peek(self, key: str, raw: bytes) -> st.SessionState | None:
        entry = self._items.get(key)
        if entry is None or entry[0] != raw:
            return None
        self._items.move_to_end(key)
        return entry[1]

    def take(self, key: str, raw: bytes) -> st.SessionState | None:
        entry = self._items.pop(key, None)
        return entry[1] if entry is not None and entry[0] == raw else None

    def put(self, key: str, raw: bytes, state: st.SessionState) -> None:
        self._items[key] = (raw, state)
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _open(
    raw: bytes | None, ident: Identity, now_ns: int, *, check: bool = True
) -> st.SessionState:
    """The stored session, or a fresh one bound to ``ident``; checks the binding."""
    if raw is None:
        return st.new_session(
            ident.session_id,
            tenant=ident.tenant,
            human=ident.human,
            service=ident.service,
            agent=ident.agent,
            now_ns=now_ns,
            principal=ident.principal,
        )
    state = st.SessionState.from_bytes(raw)
    if check:
        _check_identity(state, ident)
    return state


def _subjects(ident: Identity) -> list[str]:
    """What a revocation can name: the human, service, agent, credential and principal."""
    return [ident.human, ident.service, ident.agent, ident.credential_id, ident.principal]


def _check_identity(state: st.SessionState, ident: Identity) -> None:
    """The session belongs to the principal and identity that opened it: exactly.

    Leaving a part out is no wildcard (a session of alice is not one of "no human"),
    and another enforcement point cannot act in it, whatever identity it asserts.
    """
    if (
        state.human != ident.human
        or state.agent != ident.agent
        or state.service != ident.service
        or state.principal != ident.principal
    ):
        raise SessionConflict("identity does not match the session's bound identity")


class SessionContext:
    """Reads and writes session context around each decision."""

    def __init__(
        self,
        store: SessionStore,
        catalogue: Callable[[], Catalogue],
        weights: DriftWeights | None = None,
        *,
        state_version: int = 2,
    ) -> None:
        self.store = store
        self._state_version = state_version
        """Encoding of the states written (``session.state_version``)."""
        self._catalogue = catalogue
        self._weights = weights or DriftWeights()
        self._decoded = DecodedStates()
        # Every revocation this replica knows (its own, and those replayed from the
        # receipt store): a session store that lost them (a restarted Redis) still
        # cannot let a revoked subject through.
        self._revoked: dict[str, set[str]] = {}

    async def prepare(self, request: ActionRequest, now_ns: int) -> Prepared:
        """Load the session and compute the context parts of the OPA input."""
        ident = request.identity
        action = request.action
        key = session_key(ident.tenant, ident.session_id)
        per_param = prov.parameter_fingerprints(action.parameters)
        fps = sorted({fp for pairs in per_param.values() for _, fp, _ in pairs})
        artifacts = sorted(
            {fp for pairs in per_param.values() for kind, fp, _ in pairs if kind in _ARTIFACT_KINDS}
        )
        subjects = _subjects(ident)
        loaded = await self.store.load(key, fps, ident.tenant, artifacts, subjects)
        if loaded.revoked or self._known_revoked(ident):
            raise IdentityRejected("identity revoked", code=ErrorCode.IDENTITY_REVOKED)
        raw, seen, art_level = loaded.state, loaded.masks, loaded.artifact_level
        state = None if raw is None else self._decoded.peek(key, raw)
        if state is None:
            state = _open(raw, ident, now_ns)
            if raw is not None:
                self._decoded.put(key, raw, state)
        else:
            _check_identity(state, ident)
        info = self._catalogue().get(action.name)
        orig = state.original
        drift = score(
            tool=action.tool,
            name=action.name,
            category=info.category,
            expected_scope=tuple(orig.expected_scope) if orig else (),
            derived_scope=tuple(orig.derived_scope) if orig else (),
            outside=tuple(state.drift_outside),
            max_classification=level(orig.max_classification)
            if orig and orig.max_classification
            else None,
            highest_seen=max(state.highest, art_level),
            predicted=-1,
            tools_used=set(state.tools),
            action_count=state.action_count,
            previous_max=state.drift_max,
            previous_ema=state.drift_ema,
            weights=self._weights,
        )
        parts = {
            "session": st.summary(state, now_ns, art_level),
            "dependencies": st.dependencies(state, action.depends_on),
            "provenance": prov.classify(per_param, seen),
            "drift": drift,
        }
        return Prepared(
            key,
            parts,
            info.category,
            artifacts,
            art_level,
            state.log_head,
        )

    async def commit(
        self,
        prepared: Prepared,
        request: ActionRequest,
        decision_id: str,
        decision: DecisionResult,
        now_ns: int,
    ) -> None:
        """Record the decided action in the session (before it runs)."""
        ident = request.identity
        verdict = decision.decision.value
        predicted = decision.data_classification
        if prepared.artifact_level >= 0 and verdict != "DENY":
            art = st.level_name(prepared.artifact_level)
            predicted = art if predicted is None or level(art) > level(predicted) else predicted
        depth = int(prepared.input_parts["dependencies"]["depth"])

        decoded = self._decoded
        payment = self._catalogue().payment(request.action.name, request.action.parameters)
        pointed = prepared.category == "read" and prov.names_user_value(
            prepared.input_parts["provenance"]
        )

        def apply(raw: bytes | None) -> tuple[bytes, tuple[dict[str, Any], int]]:
            state = None if raw is None else decoded.take(prepared.key, raw)
            if state is None:
                state = _open(raw, ident, now_ns, check=False)
            entry = st.record_decision(
                state,
                decision_id=decision_id,
                name=request.action.name,
                category=prepared.category,
                verdict=verdict,
                classification=predicted,
                labels=decision.data_labels,
                defer_depth=depth,
                drift=prepared.input_parts["drift"],
                now_ns=now_ns,
                payment=payment,
                pointed=pointed,
            )
            blob = state.to_bytes(self._state_version)
            decoded.put(prepared.key, blob, state)
            return blob, (entry, state.highest)

        _, highest = await self.store.update(
            prepared.key, apply, lambda r: _log_bytes(r[0]), ident.tenant
        )
        if (
            prepared.category in _WRITE_CATEGORIES
            and verdict != "DENY"
            and highest >= 0
            and prepared.artifacts
        ):
            await self.store.artifacts_raise(
                ident.tenant, dict.fromkeys(prepared.artifacts, highest)
            )

    async def start(self, ident: Identity, original: st.OriginalRequest, now_ns: int) -> str:
        """Bind a session to its original request; returns the context log head."""
        key = session_key(ident.tenant, ident.session_id)
        if not original.expected_scope and not original.derived_scope:
            catalogue = self._catalogue()
            original = replace(
                original,
                derived_scope=derive_scope(
                    original.text, catalogue.request_scope, catalogue.categories()
                ),
            )

        def apply(raw: bytes | None) -> tuple[bytes, tuple[dict[str, Any], str]]:
            if raw is not None:
                # The original request is set only when the session is created: a session
                # opened implicitly by a Decide cannot be re-seeded with another request.
                _check_identity(st.SessionState.from_bytes(raw), ident)
                raise SessionConflict(
                    "session already exists: start a session before its first action"
                )
            state = st.new_session(
                ident.session_id,
                tenant=ident.tenant,
                human=ident.human,
                service=ident.service,
                agent=ident.agent,
                now_ns=now_ns,
                original=original,
                principal=ident.principal,
            )
            entry = {
                "kind": "start",
                "at_ns": now_ns,
                "original_request_fingerprint": fingerprint(("text", original.text)),
                "intent_class": original.intent_class,
                "expected_scope": original.expected_scope,
                "max_classification": original.max_classification,
            }
            head = st.chain(state, entry)
            return state.to_bytes(self._state_version), (entry, head)

        _, head = await self.store.update(key, apply, lambda r: _log_bytes(r[0]), ident.tenant)
        user = await _fingerprints([original.text])
        await self.store.index_add(key, dict.fromkeys(user, prov.USER))
        return head

    async def record_outcome(
        self,
        ident: Identity,
        *,
        decision_id: str,
        executed: bool,
        classification: str | None,
        labels: tuple[str, ...],
        texts: list[str],
        trust: bool | None,
        output_digest: str,
        now_ns: int,
    ) -> tuple[str, int]:
        """Fold an outcome into the session; returns (log head, highest level)."""
        key = session_key(ident.tenant, ident.session_id)
        trusted_box: list[bool] = []
        pointed_box: list[bool] = []

        def apply(raw: bytes | None) -> tuple[bytes, tuple[dict[str, Any], str, int]]:
            if raw is None:
                raise SessionNotFound("no such session")
            state = st.SessionState.from_bytes(raw)
            _check_identity(state, ident)
            rec = state.decisions.get(decision_id)
            if rec is None:
                raise SessionNotFound("no such decision in this session")
            if rec[2] not in _RAN:
                raise SessionConflict(f"decision was {rec[2]}: the action must not have run")
            # The catalogue's output trust is a floor: an enforcement point may report an
            # output as less trusted than the catalogue says, never as more.
            catalogued = self._catalogue().get(rec[0]).trusted_output
            trusted = catalogued and trust is not False
            trusted_box[:] = [trusted]
            pointed_box[:] = [st.pointed_at(state, decision_id)]
            entry = st.record_outcome(
                state,
                decision_id=decision_id,
                executed=executed,
                classification=classification,
                labels=labels,
                untrusted=executed and not trusted,
                output_digest=output_digest,
                now_ns=now_ns,
            )
            return state.to_bytes(self._state_version), (entry, state.log_head, state.highest)

        _, head, highest = await self.store.update(
            key, apply, lambda r: _log_bytes(r[0]), ident.tenant
        )
        if executed and texts:
            mask = prov.TOOL_TRUSTED if trusted_box and trusted_box[0] else prov.TOOL_UNTRUSTED
            if mask == prov.TOOL_UNTRUSTED and pointed_box and pointed_box[0]:
                mask |= prov.USER_POINTED
            await self.store.index_add(key, dict.fromkeys(await _fingerprints(texts), mask))
        return head, highest

    async def settle(
        self,
        tenant: str,
        session_id: str,
        decision_id: str,
        verdict: str,
        kind: str,
        detail: dict[str, Any],
        now_ns: int,
    ) -> str:
        """Record how a suspended action ended (approval, resolution, timeout)."""
        key = session_key(tenant, session_id)

        def apply(raw: bytes | None) -> tuple[bytes | None, tuple[dict[str, Any], str]]:
            if raw is None:  # the session expired meanwhile: nothing left to update
                return None, ({}, "")
            state = st.SessionState.from_bytes(raw)
            if verdict in ("ALLOW", "DENY", "STEP_UP", "MODIFY"):
                st.resolve_deferral(state, decision_id, verdict)
            entry = {
                "kind": kind,
                "at_ns": now_ns,
                "decision_id": decision_id,
                "verdict": verdict,
                **{k: v for k, v in detail.items() if k != "reason"},
            }
            head = st.chain(state, entry)
            return state.to_bytes(self._state_version), (entry, head)

        _, head = await self.store.update(
            key, apply, lambda r: _log_bytes(r[0]) if r[0] else [], tenant
        )
        return head

    async def revoked(self, ident: Identity) -> bool:
        """Whether any subject of ``ident`` is revoked now (one store read)."""
        if self._known_revoked(ident):
            return True
        key = session_key(ident.tenant, ident.session_id)
        return (await self.store.load(key, [], ident.tenant, [], _subjects(ident))).revoked

    async def revoke(self, tenant: str, subject: str) -> None:
        """Revoke a subject in a tenant: every later Decide naming it is DENY."""
        self._revoked.setdefault(tenant, set()).add(subject)
        await self.store.revoke(tenant, subject)

    async def revocations_current(self) -> bool:
        """Whether the store still holds the revocations last replayed into it."""
        return await self.store.revocations_current()

    async def mark_revocations_loaded(self) -> None:
        await self.store.mark_revocations_loaded()

    def _known_revoked(self, ident: Identity) -> bool:
        known = self._revoked.get(ident.tenant, set())
        return any(s and s in known for s in _subjects(ident))

    async def end(self, ident: Identity) -> tuple[str, int]:
        """Close a session; returns (final log head, action count)."""
        key = session_key(ident.tenant, ident.session_id)
        raw = (await self.store.load(key, [], ident.tenant, [])).state
        if raw is None:
            raise SessionNotFound("no such session")
        state = st.SessionState.from_bytes(raw)
        _check_identity(state, ident)
        await self.store.delete(key, ident.tenant)
        return state.log_head, state.action_count
