import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_ALLOW: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]
    DECISION_MODIFY: _ClassVar[Decision]
    DECISION_STEP_UP: _ClassVar[Decision]
    DECISION_DEFER: _ClassVar[Decision]

class RiskLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_LEVEL_UNSPECIFIED: _ClassVar[RiskLevel]
    RISK_LEVEL_LOW: _ClassVar[RiskLevel]
    RISK_LEVEL_MEDIUM: _ClassVar[RiskLevel]
    RISK_LEVEL_HIGH: _ClassVar[RiskLevel]
    RISK_LEVEL_CRITICAL: _ClassVar[RiskLevel]
DECISION_UNSPECIFIED: Decision
DECISION_ALLOW: Decision
DECISION_DENY: Decision
DECISION_MODIFY: Decision
DECISION_STEP_UP: Decision
DECISION_DEFER: Decision
RISK_LEVEL_UNSPECIFIED: RiskLevel
RISK_LEVEL_LOW: RiskLevel
RISK_LEVEL_MEDIUM: RiskLevel
RISK_LEVEL_HIGH: RiskLevel
RISK_LEVEL_CRITICAL: RiskLevel

class Delegation(_message.Message):
    __slots__ = ("delegator", "delegatee", "scopes", "issued_at", "expires_at")
    DELEGATOR_FIELD_NUMBER: _ClassVar[int]
    DELEGATEE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    delegator: str
    delegatee: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, delegator: _Optional[str] = ..., delegatee: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("tenant", "human", "service", "agent", "session_id", "roles", "delegation_chain", "expires_at", "credential_id", "human_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    HUMAN_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    DELEGATION_CHAIN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    HUMAN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    human: str
    service: str
    agent: str
    session_id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    delegation_chain: _containers.RepeatedCompositeFieldContainer[Delegation]
    expires_at: _timestamp_pb2.Timestamp
    credential_id: str
    human_token: str
    def __init__(self, tenant: _Optional[str] = ..., human: _Optional[str] = ..., service: _Optional[str] = ..., agent: _Optional[str] = ..., session_id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., delegation_chain: _Optional[_Iterable[_Union[Delegation, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., credential_id: _Optional[str] = ..., human_token: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("tool", "operation", "parameters", "depends_on", "original_tool")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_TOOL_FIELD_NUMBER: _ClassVar[int]
    tool: str
    operation: str
    parameters: _struct_pb2.Struct
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    original_tool: str
    def __init__(self, tool: _Optional[str] = ..., operation: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., original_tool: _Optional[str] = ...) -> None: ...

class Fact(_message.Message):
    __slots__ = ("name", "value", "source", "observed_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: _struct_pb2.Value
    source: str
    observed_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., source: _Optional[str] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("request_id", "identity", "action", "facts", "risk_signals", "approval_token")
    class RiskSignalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    RISK_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_TOKEN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    identity: Identity
    action: Action
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    risk_signals: _containers.ScalarMap[str, float]
    approval_token: str
    def __init__(self, request_id: _Optional[str] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., action: _Optional[_Union[Action, _Mapping]] = ..., facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., risk_signals: _Optional[_Mapping[str, float]] = ..., approval_token: _Optional[str] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "rule_id", "message", "param", "provenance", "would_change")
    CODE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    WOULD_CHANGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    rule_id: str
    message: str
    param: str
    provenance: ValueProvenance
    would_change: VerdictChange
    def __init__(self, code: _Optional[str] = ..., rule_id: _Optional[str] = ..., message: _Optional[str] = ..., param: _Optional[str] = ..., provenance: _Optional[_Union[ValueProvenance, _Mapping]] = ..., would_change: _Optional[_Union[VerdictChange, _Mapping]] = ...) -> None: ...

class ValueProvenance(_message.Message):
    __slots__ = ("origin", "sources")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    origin: str
    sources: _containers.RepeatedCompositeFieldContainer[ValueSource]
    def __init__(self, origin: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[ValueSource, _Mapping]]] = ...) -> None: ...

class ValueSource(_message.Message):
    __slots__ = ("call", "tool", "decision_id")
    CALL_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    call: int
    tool: str
    decision_id: str
    def __init__(self, call: _Optional[int] = ..., tool: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class VerdictChange(_message.Message):
    __slots__ = ("kind", "text", "approver_group", "fact", "threshold", "value", "context_needed")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    APPROVER_GROUP_FIELD_NUMBER: _ClassVar[int]
    FACT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_NEEDED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    text: str
    approver_group: str
    fact: str
    threshold: float
    value: float
    context_needed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., text: _Optional[str] = ..., approver_group: _Optional[str] = ..., fact: _Optional[str] = ..., threshold: _Optional[float] = ..., value: _Optional[float] = ..., context_needed: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyVersion(_message.Message):
    __slots__ = ("revision", "hash")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    revision: str
    hash: str
    def __init__(self, revision: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class Risk(_message.Message):
    __slots__ = ("level", "score")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    level: RiskLevel
    score: float
    def __init__(self, level: _Optional[_Union[RiskLevel, str]] = ..., score: _Optional[float] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approvers", "timeout_seconds", "approval_id")
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    approvers: _containers.RepeatedScalarFieldContainer[str]
    timeout_seconds: int
    approval_id: str
    def __init__(self, approvers: _Optional[_Iterable[str]] = ..., timeout_seconds: _Optional[int] = ..., approval_id: _Optional[str] = ...) -> None: ...

class Deferral(_message.Message):
    __slots__ = ("trigger", "context_needed", "timeout_seconds", "deferral_id")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_NEEDED_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    trigger: str
    context_needed: _containers.RepeatedScalarFieldContainer[str]
    timeout_seconds: int
    deferral_id: str
    def __init__(self, trigger: _Optional[str] = ..., context_needed: _Optional[_Iterable[str]] = ..., timeout_seconds: _Optional[int] = ..., deferral_id: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision_id", "decision", "reasons", "modified_parameters", "policy", "risk", "approval", "deferral", "matched_rules", "request_id", "receipt")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    DEFERRAL_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    decision: Decision
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    modified_parameters: _struct_pb2.Struct
    policy: PolicyVersion
    risk: Risk
    approval: Approval
    deferral: Deferral
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    receipt: Receipt
    def __init__(self, decision_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., modified_parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., policy: _Optional[_Union[PolicyVersion, _Mapping]] = ..., risk: _Optional[_Union[Risk, _Mapping]] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ..., deferral: _Optional[_Union[Deferral, _Mapping]] = ..., matched_rules: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("receipt_id", "sequence", "payload")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    sequence: int
    payload: str
    def __init__(self, receipt_id: _Optional[str] = ..., sequence: _Optional[int] = ..., payload: _Optional[str] = ...) -> None: ...

class DecideStreamRequest(_message.Message):
    __slots__ = ("message_id", "request", "timeout_ms")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    request: DecideRequest
    timeout_ms: int
    def __init__(self, message_id: _Optional[int] = ..., request: _Optional[_Union[DecideRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class DecideStreamResponse(_message.Message):
    __slots__ = ("message_id", "response", "error")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    response: DecideResponse
    error: StreamError
    def __init__(self, message_id: _Optional[int] = ..., response: _Optional[_Union[DecideResponse, _Mapping]] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("status", "code", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: int
    code: str
    message: str
    def __init__(self, status: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
