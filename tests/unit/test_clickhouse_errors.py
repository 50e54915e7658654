"""classify_error without a server: a connection that nothing answers, and the exception
objects clickhouse-connect builds for a server's reply (its own ``build_http_error``, fed the
status, the ``X-ClickHouse-Exception-Code`` header and the body a server sends). The real
gateway's refusals are in tests/integration/test_clickhouse_errors.py."""

from __future__ import annotations

import socket

import clickhouse_connect
import pytest
from clickhouse_connect.driver._backend.httpcommon import build_http_error
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from pipeline.sinks.clickhouse import PERMANENT_ERROR_CODES, PermanentSinkError, classify_error


def server_reply(code: int, name: str, text: str, retried: bool = False) -> DatabaseError:
    """The exception clickhouse-connect raises for an HTTP 500 ClickHouse error reply."""
    body = f"Code: {code}. DB::Exception: {text}. ({name}) (version 25.8.1.1)"
    return build_http_error(500, str(code), body, True, "http://ch:8123", retried)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_transient() -> None:
    with pytest.raises(OperationalError) as caught:
        clickhouse_connect.get_client(
            host="127.0.0.1", port=closed_port(), connect_timeout=2, send_receive_timeout=2
        )
    failure = classify_error(caught.value)
    assert not failure.permanent and failure.code is None


@pytest.mark.parametrize(
    ("code", "name", "permanent"),
    [
        (16, "NO_SUCH_COLUMN_IN_TABLE", True),
        (60, "UNKNOWN_TABLE", True),
        (62, "SYNTAX_ERROR", True),
        (53, "TYPE_MISMATCH", True),
        (497, "ACCESS_DENIED", True),
        (516, "AUTHENTICATION_FAILED", True),
        (164, "READONLY", True),
        (252, "TOO_MANY_PARTS", False),
        (241, "MEMORY_LIMIT_EXCEEDED", False),
        (159, "TIMEOUT_EXCEEDED", False),
        (202, "TOO_MANY_SIMULTANEOUS_QUERIES", False),
        (242, "TABLE_IS_READ_ONLY", False),
        (209, "SOCKET_TIMEOUT", False),
        (999, "KEEPER_EXCEPTION", False),
        (394, "QUERY_WAS_CANCELLED", False),
    ],
)
def test_the_server_code_decides(code: int, name: str, permanent: bool) -> None:
    for retried in (False, True):  # after its own retry the client says OperationalError
        failure = classify_error(server_reply(code, name, "something", retried))
        assert failure.permanent is permanent, (code, name, retried)
        assert (failure.code, failure.name) == (code, name)


def test_a_code_only_in_the_message_counts_and_the_names_agree_with_the_codes() -> None:
    old_style = DatabaseError(
        "Received ClickHouse exception, code: 60, server response: Code: 60. "
        "DB::Exception: Table db.nope does not exist. (UNKNOWN_TABLE)"
    )
    failure = classify_error(old_style)
    assert failure.permanent and (failure.code, failure.name) == (60, "UNKNOWN_TABLE")
    named = DatabaseError("Not enough privileges (NOT_ENOUGH_PRIVILEGES)", name="ACCESS_DENIED")
    assert classify_error(named).permanent  # no code at all: the name decides
    assert not classify_error(ValueError("code: 60")).permanent  # not from ClickHouse
    assert not classify_error(DatabaseError("HTTP driver received HTTP status 503")).permanent
    assert set(PERMANENT_ERROR_CODES.values()) >= {"ACCESS_DENIED", "SYNTAX_ERROR"}


def test_the_stop_message_names_the_error_and_what_to_do() -> None:
    failure = classify_error(server_reply(497, "ACCESS_DENIED", "teilhabe: Not enough privileges"))
    message = str(PermanentSinkError("flush", failure))
    assert "clickhouse refused the flush: code=497 (ACCESS_DENIED)" in message
    assert "Not enough privileges" in message and "restart the worker" in message
