"""The closed error vocabulary of aarm-pdp.

Every failure the service can meet has one :class:`ErrorCode`. The code is the
``code`` label on ``aarm_errors_total``, the reason code of a fail-closed DENY, and
(through :func:`grpc_status`) the gRPC status a client sees. Details go to the log,
never to the client.

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
    └── ReceiptInvalid             a receipt body that cannot be signed or stored

Third-party exceptions (aiohttp, redis, grpc, json) are translated into these at the
module boundary that calls the library; none escapes it.
"""

from __future__ import annotations

import enum

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


_GRPC_STATUS: dict[ErrorCode, tuple[grpc.StatusCode, str]] = {
    ErrorCode.REQUEST_INVALID: (grpc.StatusCode.INVALID_ARGUMENT, "request invalid"),
    ErrorCode.INTERNAL: (grpc.StatusCode.INTERNAL, "internal error"),
    ErrorCode.SESSION_NOT_FOUND: (grpc.StatusCode.NOT_FOUND, "session or decision not found"),
    ErrorCode.APPROVAL_REJECTED: (grpc.StatusCode.PERMISSION_DENIED, "not allowed"),
    ErrorCode.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
    ErrorCode.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, "permission denied"),
    ErrorCode.SESSION_CONFLICT: (grpc.StatusCode.FAILED_PRECONDITION, "session conflict"),
    ErrorCode.SESSION_STORE_UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, "session store unavailable"),
}


def grpc_status(code: ErrorCode) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and generic client message for an error that aborts an RPC.

    On Decide only request errors and internal errors abort the RPC; every other
    code is answered as an OK DENY carrying the code as its reason. The session RPCs
    abort with the mapped status.
    """
    return _GRPC_STATUS.get(code, (grpc.StatusCode.INTERNAL, "internal error"))
