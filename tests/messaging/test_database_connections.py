"""The sandbox and the send path hold a bounded number of database connections, whatever
SEND_CONCURRENCY: counted on PostgreSQL (pg_stat_activity) during a send."""

import threading

import pytest
from django.db import connection, connections

from messaging.services import MessageInput, create_message

pytestmark = pytest.mark.postgres


def connections_to_the_test_database() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_a_send_with_128_requests_in_flight_opens_a_handful_of_database_connections(
    postgres_only, sandbox, tenant, make_device, settings
):
    settings.SEND_CONCURRENCY = settings.DELIVERY_MAX_UNRECORDED = settings.FCM_HTTP_POOL_SIZE = 128
    for i in range(300):
        make_device(f"tok-{i:03}", user=f"u{i}")
    sandbox.state.configure(latency_ms=50)  # keeps many requests in flight at once
    # In tests the sandbox's database threads close their connection after every job; a
    # closed backend lingers in pg_stat_activity for a moment beside its successor, which a
    # loaded machine makes visible. Held connections count exactly what the bound is about.
    sandbox.handler.database_threads.close_after_each = False
    baseline = connections_to_the_test_database()
    most, done = [baseline], threading.Event()

    def watch():
        # Its own connection: one more to allow for.
        while not done.is_set():
            most.append(connections_to_the_test_database())
            done.wait(0.02)
        connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="all"))
    finally:
        done.set()
        watcher.join()

    message.refresh_from_db()
    assert message.sent_count == 300
    assert sandbox.state.send_requests >= 300
    # This process's connection, the watcher's, and the sandbox's 4 database threads.
    assert max(most) <= baseline + 1 + sandbox.db_connections, most
