"""A Redis that accepts connections but never answers must cost the API milliseconds, not seconds.

The fake is real TCP: a server on 127.0.0.1 that accepts every connection and never says a
word. What is measured is not wall time but how often Herald goes back to it: with a short
socket timeout and a circuit breaker, once per process per REDIS_BREAKER_SECONDS.
"""

import socket
import threading

import pytest
from django.test import Client
from rest_framework.test import APIClient

from api import throttling
from tests.devices.conftest import EVENT


class SilentServer:
    """Accepts TCP connections, counts them, holds them open, never answers."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self._held = []
        self._running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self._running:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(connection)

    def close(self):
        self._running = False
        self.socket.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def hung_redis(settings):
    server = SilentServer()
    settings.REDIS_URL = f"redis://127.0.0.1:{server.port}/0"
    settings.REDIS_SOCKET_TIMEOUT = 0.1
    settings.REDIS_BREAKER_SECONDS = 5
    yield server
    server.close()


@pytest.fixture
def post_event(tenant, app_key):
    def post_event():
        body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key}
        return APIClient().post("/events", body, format="json", REMOTE_ADDR="203.0.113.9")

    return post_event


def test_a_hung_redis_is_tried_once_then_left_alone_while_requests_are_served(
    hung_redis, rate_limit_clock, post_event
):
    failures = throttling.breaker.failures

    statuses = [post_event().status_code for _ in range(30)]

    assert statuses == [200] * 30
    # One connection, one short timeout; the other 29 requests skipped Redis altogether.
    assert hung_redis.accepted == 1
    assert throttling.breaker.failures == failures + 1


def test_after_the_breaker_window_redis_is_tried_again(hung_redis, rate_limit_clock, post_event):
    failures = throttling.breaker.failures
    post_event()
    rate_limit_clock.now += 4.9
    post_event()
    assert throttling.breaker.failures == failures + 1
    assert hung_redis.accepted == 1

    rate_limit_clock.now += 0.2
    post_event()

    assert throttling.breaker.failures == failures + 2


def test_limits_still_hold_while_redis_is_left_alone(hung_redis, rate_limit_clock, post_event, settings):
    settings.RATE_LIMIT_APP_PER_IP = "3/min"

    assert [post_event().status_code for _ in range(4)] == [200, 200, 200, 429]


def test_healthz_reports_a_hung_redis_as_degraded_and_keeps_answering_200(db, hung_redis):
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"]["ok"] is False


def test_healthz_names_the_failing_check_but_no_host_port_or_exception(db, hung_redis, admin_client):
    public = Client().get("/healthz")
    for_a_superuser = admin_client.get("/healthz")

    redis_check = public.json()["checks"]["redis"]
    assert {k: v for k, v in redis_check.items() if k != "ms"} == {"ok": False, "error": "unavailable"}
    for secret in ("127.0.0.1", str(hung_redis.port), "Timeout", "Error"):
        assert secret not in public.content.decode()
    assert "Timeout" in for_a_superuser.json()["checks"]["redis"]["detail"]
