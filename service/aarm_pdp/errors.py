"""The closed error vocabulary of aarm-pdp.

Every failure the service can meet has one :class:`ErrorCode`. The code is the
``code`` label on ``aarm_errors_total``, the reason code of a fail-closed DENY, and
(through :func:`grpc_status`) the gRPC status a client sees. :data:`ERRORS` is the one
table: per code its gRPC status, the client message and the fail-closed DENY message.
Details go to the log, never to the client (except a request's own validation detail).

Exception hierarchy::

    AarmError                      base; carries an ErrorCode
    ├── RequestInvalid             the request breaks the contract or a limit
    ├── IdentityRejected           identity expired or revoked (decided as DENY)
    ├── IdentityUnverified         required end-user IdP token missing or invalid (DENY)
    ├── Unauthenticated            no credential, or one that does not verify (UNAUTHENTICATED)
    ├── PermissionDenied           principal lacks the role in the tenant (PERMISSION_DENIED)
    ├── ApprovalRejected           approver not allowed, token unknown/used/expired/other action
    ├── SessionError               a session RPC cannot be honoured
    │   ├── SessionNotFound        no such session (or decision in it)
    │   └── SessionConflict        identity mismatch, already started, wrong state
    ├── SessionStoreUnavailable    the session store (memory or Redis) failed
    ├── PolicyEngineError          the policy engine could not answer
    │   ├── OpaUnavailable         connection refused, reset, sidecar down
    │   ├── OpaTimeout             no answer within the deadline
    │   └── OpaBadResponse         non-200 status or a body that is not JSON
    ├── DecisionInvalid            OPA answered, but not with a valid decision
    │   ├── DecisionUndefined      the entrypoint is undefined for this input
    │   └── DecisionMalformed      wrong shape, type or unknown verdict
    ├── ReceiptStoreUnavailable    the receipt store failed; the action is DENY
    ├── ReceiptInvalid             a receipt body that cannot be signed or stored
    ├── Overloaded                 admission control refused the call (RESOURCE_EXHAUSTED)
    ├── DeadlineExceeded           a DecideStream message not answered by its own deadline
    └── BudgetExhausted            a tenant's ticket or session budget is full (DENY)

Third-party exceptions (aiohttp, redis, grpc, json) are translated into these at the
module boundary that calls the library; none escapes it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc


class ErrorCode(enum.StrEnum):
    """Machine codes for everything that can stop a normal decision."""

    REQUEST_INVALID = "request_invalid"
    IDENTITY_MISSING = "identity_missing"
    IDENTITY_EXPIRED = "identity_expired"
    IDENTITY_REVOKED = "identity_revoked"
    IDENTITY_UNVERIFIED = "identity_unverified"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    APPROVAL_REJECTED = "approval_rejected"
    STALE_POLICY = "stale_policy"
    DEFER_EXHAUSTED = "defer_exhausted"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_CONFLICT = "session_conflict"
    SESSION_STORE_UNAVAILABLE = "session_store_unavailable"
    OPA_UNAVAILABLE = "opa_unavailable"
    OPA_TIMEOUT = "opa_timeout"
    OPA_BAD_RESPONSE = "opa_bad_response"
    DECISION_UNDEFINED = "decision_undefined"
    DECISION_MALFORMED = "decision_malformed"
    INTERNAL = "internal"
    RECEIPT_STORE_UNAVAILABLE = "receipt_store_unavailable"
    RECEIPT_INVALID = "receipt_invalid"
    OVERLOADED = "overloaded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    TICKET_BUDGET_EXHAUSTED = "ticket_budget_exhausted"
    SESSION_BUDGET_EXHAUSTED = "session_budget_exhausted"


class AarmError(Exception):
    """Base of every aarm-pdp error; ``code`` says which one."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, detail: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class RequestInvalid(AarmError):
    """The request breaks the API contract or a size/depth limit."""

    code = ErrorCode.REQUEST_INVALID


class IdentityRejected(AarmError):
    """The identity's credential expired or was revoked; decisions for it are DENY."""

    code = ErrorCode.IDENTITY_REVOKED


class IdentityUnverified(AarmError):
    """The tenant requires a verified end-user IdP token and none verified; Decide is DENY."""

    code = ErrorCode.IDENTITY_UNVERIFIED


class Unauthenticated(AarmError):
    """No credential, or a credential that does not verify; the detail is for the log only."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(AarmError):
    """The principal holds no role for this RPC in the requested tenant."""

    code = ErrorCode.PERMISSION_DENIED


class ApprovalRejected(AarmError):
    """An approval or its token is not valid for this caller, action or time."""

    code = ErrorCode.APPROVAL_REJECTED


class SessionError(AarmError):
    """A session RPC cannot be honoured."""

    code = ErrorCode.SESSION_NOT_FOUND


class SessionNotFound(SessionError):
    """No such session, or no such decision in it."""

    code = ErrorCode.SESSION_NOT_FOUND


class SessionConflict(SessionError):
    """The request conflicts with the session: other identity, already started, wrong state."""

    code = ErrorCode.SESSION_CONFLICT


class SessionStoreUnavailable(AarmError):
    """The session store failed; decisions that need it are DENY."""

    code = ErrorCode.SESSION_STORE_UNAVAILABLE


class PolicyEngineError(AarmError):
    """The policy engine could not answer."""

    code = ErrorCode.OPA_UNAVAILABLE


class OpaUnavailable(PolicyEngineError):
    """The sidecar refused, reset or is not running."""

    code = ErrorCode.OPA_UNAVAILABLE


class OpaTimeout(PolicyEngineError):
    """The sidecar gave no answer within the deadline."""

    code = ErrorCode.OPA_TIMEOUT


class OpaBadResponse(PolicyEngineError):
    """The sidecar answered with an error status or a body that is not JSON."""

    code = ErrorCode.OPA_BAD_RESPONSE


class DecisionInvalid(AarmError):
    """OPA answered, but the answer is not a valid decision document."""

    code = ErrorCode.DECISION_MALFORMED


class DecisionUndefined(DecisionInvalid):
    """The entrypoint rule is undefined for this input."""

    code = ErrorCode.DECISION_UNDEFINED


class DecisionMalformed(DecisionInvalid):
    """The decision document has the wrong shape, a wrong type or an unknown verdict."""

    code = ErrorCode.DECISION_MALFORMED


class ReceiptStoreUnavailable(AarmError):
    """The receipt store failed or is overloaded; no receipt, so the action is DENY."""

    code = ErrorCode.RECEIPT_STORE_UNAVAILABLE


class ReceiptInvalid(AarmError):
    """A receipt body lacks a required field, reuses a receipt id or cannot be canonicalised."""

    code = ErrorCode.RECEIPT_INVALID


class Overloaded(AarmError):
    """Too many calls or request bytes in flight: refused before any work is done.

    The detail names the limit that was reached (never its value or the load), so the
    caller knows to back off and retry.
    """

    code = ErrorCode.OVERLOADED


class DeadlineExceeded(AarmError):
    """A DecideStream message whose answer was not ready by its own deadline (its
    ``timeout_ms``): answered with this error, a DENY, whatever was decided meanwhile."""

    code = ErrorCode.DEADLINE_EXCEEDED


class BudgetExhausted(AarmError):
    """A store's byte or entry budget (the tenant's, or the whole store's) has no room
    for a new approval or deferral ticket, or a new or grown session: refused, never
    made room for by dropping one that is still open (docs/performance.md, "Memory
    bounds"). Decide answers DENY with the code; other RPCs RESOURCE_EXHAUSTED."""

    code = ErrorCode.SESSION_BUDGET_EXHAUSTED


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """Everything said about one error code, in one place."""

    status: grpc.StatusCode
    """The gRPC status of an RPC this error aborts."""
    client_message: str
    """The generic message a client sees with that status (details go to the log)."""
    deny_message: str
    """The reason message of the fail-closed DENY that stands in for a decision."""
    client_detail: bool = False
    """Whether the error's own detail is safe to show the caller instead (it describes
    only the caller's own request)."""


_S = grpc.StatusCode
ERRORS: dict[ErrorCode, ErrorRow] = {
    ErrorCode.REQUEST_INVALID: ErrorRow(
        _S.INVALID_ARGUMENT, "request invalid", "the request is invalid; failing closed", True
    ),
    ErrorCode.IDENTITY_MISSING: ErrorRow(
        _S.INVALID_ARGUMENT,
        "identity missing",
        "action carries no verifiable identity (AARM R6)",
        True,
    ),
    ErrorCode.IDENTITY_EXPIRED: ErrorRow(
        _S.PERMISSION_DENIED,
        "identity expired",
        "the identity's credential has expired (AARM R6)",
    ),
    ErrorCode.IDENTITY_REVOKED: ErrorRow(
        _S.PERMISSION_DENIED, "identity revoked", "the identity has been revoked (AARM R6)"
    ),
    ErrorCode.IDENTITY_UNVERIFIED: ErrorRow(
        _S.PERMISSION_DENIED,
        "end-user identity not verified",
        "the end user's identity token is missing or does not verify (AARM R6)",
    ),
    ErrorCode.UNAUTHENTICATED: ErrorRow(
        _S.UNAUTHENTICATED, "unauthenticated", "the caller is not authenticated; failing closed"
    ),
    ErrorCode.PERMISSION_DENIED: ErrorRow(
        _S.PERMISSION_DENIED,
        "permission denied",
        "the caller may not act for this tenant; failing closed",
    ),
    ErrorCode.APPROVAL_REJECTED: ErrorRow(
        _S.PERMISSION_DENIED,
        "not allowed",
        "approval token not valid for this action; failing closed",
    ),
    ErrorCode.STALE_POLICY: ErrorRow(
        _S.FAILED_PRECONDITION,
        "policy changed",
        "the policy changed while the action was suspended; failing closed",
    ),
    ErrorCode.DEFER_EXHAUSTED: ErrorRow(
        _S.FAILED_PRECONDITION,
        "deferral attempts exhausted",
        "deferral still unresolved after the allowed attempts",
    ),
    ErrorCode.SESSION_NOT_FOUND: ErrorRow(
        _S.NOT_FOUND,
        "session or decision not found",
        "the session or decision is unknown; failing closed",
        True,
    ),
    ErrorCode.SESSION_CONFLICT: ErrorRow(
        _S.FAILED_PRECONDITION,
        "session conflict",
        "identity does not match the session; failing closed",
        True,
    ),
    ErrorCode.SESSION_STORE_UNAVAILABLE: ErrorRow(
        _S.UNAVAILABLE,
        "session store unavailable",
        "session context unavailable; failing closed",
    ),
    ErrorCode.OPA_UNAVAILABLE: ErrorRow(
        _S.UNAVAILABLE, "policy engine unavailable", "policy engine unavailable; failing closed"
    ),
    ErrorCode.OPA_TIMEOUT: ErrorRow(
        _S.UNAVAILABLE,
        "policy engine timed out",
        "policy engine did not answer in time; failing closed",
    ),
    ErrorCode.OPA_BAD_RESPONSE: ErrorRow(
        _S.UNAVAILABLE,
        "policy engine error",
        "policy engine answered with an error; failing closed",
    ),
    ErrorCode.DECISION_UNDEFINED: ErrorRow(
        _S.INTERNAL,
        "no policy decision",
        "policy produced no decision for this action; failing closed",
    ),
    ErrorCode.DECISION_MALFORMED: ErrorRow(
        _S.INTERNAL,
        "malformed policy decision",
        "policy produced a malformed decision; failing closed",
    ),
    ErrorCode.INTERNAL: ErrorRow(
        _S.INTERNAL, "internal error", "internal error while deciding; failing closed"
    ),
    ErrorCode.RECEIPT_STORE_UNAVAILABLE: ErrorRow(
        _S.UNAVAILABLE,
        "receipt store unavailable",
        "receipt could not be stored durably; failing closed",
    ),
    ErrorCode.RECEIPT_INVALID: ErrorRow(
        _S.FAILED_PRECONDITION,
        "receipt refused",
        "the receipt could not be written (its chain may have ended); failing closed",
    ),
    ErrorCode.OVERLOADED: ErrorRow(
        _S.RESOURCE_EXHAUSTED,
        "overloaded: retry with backoff",
        "the service is overloaded; failing closed",
        True,
    ),
    ErrorCode.DEADLINE_EXCEEDED: ErrorRow(
        _S.DEADLINE_EXCEEDED,
        "deadline exceeded",
        "no decision within the caller's deadline; failing closed",
    ),
    ErrorCode.TICKET_BUDGET_EXHAUSTED: ErrorRow(
        _S.RESOURCE_EXHAUSTED,
        "too many open approvals or deferrals: settle some first",
        "no room for another open approval or deferral ticket; failing closed",
    ),
    ErrorCode.SESSION_BUDGET_EXHAUSTED: ErrorRow(
        _S.RESOURCE_EXHAUSTED,
        "session budget full: end idle sessions first",
        "no room for the session's state in the session store; failing closed",
    ),
}
"""The one error table: a row for every :class:`ErrorCode` (a unit test checks it)."""


def grpc_status(code: ErrorCode) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and generic client message for an error that aborts an RPC.

    On Decide only request errors and internal errors abort the RPC; every other
    code is answered as an OK DENY carrying the code as its reason. The other RPCs
    abort with the mapped status.
    """
    row = ERRORS[code]
    return row.status, row.client_message


def client_message(exc: AarmError) -> str:
    """What the caller is told of ``exc``: its own detail where safe, else the generic."""
    row = ERRORS[exc.code]
    return exc.detail if row.client_detail else row.client_message


def deny_message(code: ErrorCode) -> str:
    """The message of the fail-closed DENY reason for ``code``."""
    return ERRORS[code].deny_message
