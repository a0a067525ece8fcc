"""A real PostgreSQL for integration tests (:class:`tests.support.processes.PostgresServer`).

Each test gets a fresh database (``pg_dsn``); the cluster lives for the whole pytest
session and is stopped and deleted at the end.

Import the fixtures into a test module::

    from tests.integration.conftest_pg import pg_dsn_fixture, pg_server_fixture  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import MissingTool, PostgresServer


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except MissingTool as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="pg_dsn")
def pg_dsn_fixture(pg_server: PostgresServer) -> str:
    """A DSN to a fresh, empty database on the session's cluster."""
    return pg_server.create_database()
