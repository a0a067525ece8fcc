import datetime

from aarm_pdp_client._gen.aarm.v1 import decision_pb2 as _decision_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Classification(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLASSIFICATION_UNSPECIFIED: _ClassVar[Classification]
    CLASSIFICATION_PUBLIC: _ClassVar[Classification]
    CLASSIFICATION_INTERNAL: _ClassVar[Classification]
    CLASSIFICATION_CONFIDENTIAL: _ClassVar[Classification]
    CLASSIFICATION_RESTRICTED: _ClassVar[Classification]

class Trust(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUST_UNSPECIFIED: _ClassVar[Trust]
    TRUST_TRUSTED: _ClassVar[Trust]
    TRUST_UNTRUSTED: _ClassVar[Trust]

class OutcomeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_STATUS_UNSPECIFIED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_EXECUTED: _ClassVar[OutcomeStatus]
    OUTCOME_STATUS_FAILED: _ClassVar[OutcomeStatus]
CLASSIFICATION_UNSPECIFIED: Classification
CLASSIFICATION_PUBLIC: Classification
CLASSIFICATION_INTERNAL: Classification
CLASSIFICATION_CONFIDENTIAL: Classification
CLASSIFICATION_RESTRICTED: Classification
TRUST_UNSPECIFIED: Trust
TRUST_TRUSTED: Trust
TRUST_UNTRUSTED: Trust
OUTCOME_STATUS_UNSPECIFIED: OutcomeStatus
OUTCOME_STATUS_EXECUTED: OutcomeStatus
OUTCOME_STATUS_FAILED: OutcomeStatus

class StartSessionRequest(_message.Message):
    __slots__ = ("identity", "original_request", "intent_class", "expected_scope", "max_classification")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    INTENT_CLASS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SCOPE_FIELD_NUMBER: _ClassVar[int]
    MAX_CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    identity: _decision_pb2.Identity
    original_request: str
    intent_class: str
    expected_scope: _containers.RepeatedScalarFieldContainer[str]
    max_classification: Classification
    def __init__(self, identity: _Optional[_Union[_decision_pb2.Identity, _Mapping]] = ..., original_request: _Optional[str] = ..., intent_class: _Optional[str] = ..., expected_scope: _Optional[_Iterable[str]] = ..., max_classification: _Optional[_Union[Classification, str]] = ...) -> None: ...

class StartSessionResponse(_message.Message):
    __slots__ = ("session_id", "context_hash")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_HASH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    context_hash: str
    def __init__(self, session_id: _Optional[str] = ..., context_hash: _Optional[str] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("identity", "decision_id", "status", "started_at", "completed_at", "output_digest", "classification", "labels", "output_text", "output_values", "source_trust", "error")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_VALUES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TRUST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    identity: _decision_pb2.Identity
    decision_id: str
    status: OutcomeStatus
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    output_digest: str
    classification: Classification
    labels: _containers.RepeatedScalarFieldContainer[str]
    output_text: str
    output_values: _containers.RepeatedScalarFieldContainer[str]
    source_trust: Trust
    error: str
    def __init__(self, identity: _Optional[_Union[_decision_pb2.Identity, _Mapping]] = ..., decision_id: _Optional[str] = ..., status: _Optional[_Union[OutcomeStatus, str]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_digest: _Optional[str] = ..., classification: _Optional[_Union[Classification, str]] = ..., labels: _Optional[_Iterable[str]] = ..., output_text: _Optional[str] = ..., output_values: _Optional[_Iterable[str]] = ..., source_trust: _Optional[_Union[Trust, str]] = ..., error: _Optional[str] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("context_hash", "highest_classification")
    CONTEXT_HASH_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    context_hash: str
    highest_classification: Classification
    def __init__(self, context_hash: _Optional[str] = ..., highest_classification: _Optional[_Union[Classification, str]] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("identity",)
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    identity: _decision_pb2.Identity
    def __init__(self, identity: _Optional[_Union[_decision_pb2.Identity, _Mapping]] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("context_hash", "action_count")
    CONTEXT_HASH_FIELD_NUMBER: _ClassVar[int]
    ACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    context_hash: str
    action_count: int
    def __init__(self, context_hash: _Optional[str] = ..., action_count: _Optional[int] = ...) -> None: ...
