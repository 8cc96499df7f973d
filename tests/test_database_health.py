"""The PostgreSQL connection's health check (config/postgresql): a connection the server ended
is replaced before the request's first query; a quiet one is reused without a round trip."""

import select

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.backends.postgresql import base

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def next_request():
    """What Django does between two requests on a kept connection (request_started)."""
    connection.close_if_unusable_or_obsolete()


def terminate(pid: int) -> None:
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The server has closed it once its socket turns readable (its FATAL, then the end).
    poller = select.poll()
    poller.register(connection.connection.pgconn.socket, select.POLLIN)
    assert poller.poll(10_000)


def test_the_first_query_after_the_server_ended_the_connection_gets_a_new_one(postgres_only):
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"]
    pid = backend_pid()
    terminate(pid)

    next_request()

    assert backend_pid() != pid


def test_a_quiet_connection_is_reused_without_a_round_trip(postgres_only, monkeypatch):
    pid = backend_pid()

    def select_one(self):
        raise AssertionError("SELECT 1 sent")

    monkeypatch.setattr(base.DatabaseWrapper, "is_usable", select_one)
    next_request()

    assert backend_pid() == pid
