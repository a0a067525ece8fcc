from aarm_pdp_client._gen.aarm.v1 import decision_pb2 as _decision_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeferralStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEFERRAL_STATUS_UNSPECIFIED: _ClassVar[DeferralStatus]
    DEFERRAL_STATUS_PENDING: _ClassVar[DeferralStatus]
    DEFERRAL_STATUS_RESOLVED: _ClassVar[DeferralStatus]
    DEFERRAL_STATUS_EXPIRED: _ClassVar[DeferralStatus]
DEFERRAL_STATUS_UNSPECIFIED: DeferralStatus
DEFERRAL_STATUS_PENDING: DeferralStatus
DEFERRAL_STATUS_RESOLVED: DeferralStatus
DEFERRAL_STATUS_EXPIRED: DeferralStatus

class GetDeferralRequest(_message.Message):
    __slots__ = ("identity", "deferral_id")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DEFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    identity: _decision_pb2.Identity
    deferral_id: str
    def __init__(self, identity: _Optional[_Union[_decision_pb2.Identity, _Mapping]] = ..., deferral_id: _Optional[str] = ...) -> None: ...

class GetDeferralResponse(_message.Message):
    __slots__ = ("deferral_id", "decision_id", "status", "deferral", "resolution")
    DEFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEFERRAL_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    deferral_id: str
    decision_id: str
    status: DeferralStatus
    deferral: _decision_pb2.Deferral
    resolution: _decision_pb2.DecideResponse
    def __init__(self, deferral_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., status: _Optional[_Union[DeferralStatus, str]] = ..., deferral: _Optional[_Union[_decision_pb2.Deferral, _Mapping]] = ..., resolution: _Optional[_Union[_decision_pb2.DecideResponse, _Mapping]] = ...) -> None: ...

class ProvideContextRequest(_message.Message):
    __slots__ = ("identity", "deferral_id", "facts")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DEFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    identity: _decision_pb2.Identity
    deferral_id: str
    facts: _containers.RepeatedCompositeFieldContainer[_decision_pb2.Fact]
    def __init__(self, identity: _Optional[_Union[_decision_pb2.Identity, _Mapping]] = ..., deferral_id: _Optional[str] = ..., facts: _Optional[_Iterable[_Union[_decision_pb2.Fact, _Mapping]]] = ...) -> None: ...

class ProvideContextResponse(_message.Message):
    __slots__ = ("status", "decision")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    status: DeferralStatus
    decision: _decision_pb2.DecideResponse
    def __init__(self, status: _Optional[_Union[DeferralStatus, str]] = ..., decision: _Optional[_Union[_decision_pb2.DecideResponse, _Mapping]] = ...) -> None: ...
