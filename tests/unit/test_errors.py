"""The one error table covers the closed vocabulary, and every exception maps into it."""

from __future__ import annotations

import inspect

import grpc
import pytest
from aarm_pdp import errors
from aarm_pdp.decision.engine import fail_closed
from aarm_pdp.errors import ERRORS, AarmError, ErrorCode


def test_every_code_has_exactly_one_row() -> None:
    assert set(ERRORS) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_row_is_complete(code: ErrorCode) -> None:
    row = ERRORS[code]
    assert row.status is not grpc.StatusCode.OK
    assert row.client_message and row.deny_message
    status, message = errors.grpc_status(code)
    assert (status, message) == (row.status, row.client_message)
    deny = fail_closed(code)
    assert deny.reasons[0].code == code.value
    assert deny.reasons[0].rule_id == f"aarm.fail_closed.{code.value}"
    assert deny.reasons[0].message == row.deny_message


def test_every_exception_class_carries_a_code_of_the_table() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, AarmError)
    ]
    assert len(classes) > 10
    for cls in classes:
        assert cls.code in ERRORS, cls


def test_client_sees_detail_only_where_the_table_says_so() -> None:
    assert errors.client_message(errors.RequestInvalid("limit too big")) == "limit too big"
    leaky = errors.ReceiptStoreUnavailable("disk /var/lib/x full: password=hunter2")
    assert errors.client_message(leaky) == "receipt store unavailable"
