"""Rate limits per client IP and per API key: 429 with Retry-After, counted across requests."""

import pytest
from rest_framework.test import APIClient

from tests.devices.conftest import EVENT

# Fixed windows on a stopped clock: a minute boundary cannot fall mid-test.
pytestmark = pytest.mark.usefixtures("frozen_clock")


@pytest.fixture
def post_event(tenant):
    def post_event(key, ip="203.0.113.7"):
        body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": key}
        return APIClient().post("/events", body, format="json", REMOTE_ADDR=ip)

    return post_event


def test_one_ip_over_its_limit_gets_429_with_retry_after(settings, post_event, app_key):
    settings.RATE_LIMIT_PER_IP = "3/min"

    statuses = [post_event(app_key).status_code for _ in range(3)]
    limited = post_event(app_key)

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert limited.headers["Retry-After"] == "30"  # the clock stands at hh:mm:30


def test_the_next_window_starts_a_fresh_count(settings, post_event, app_key, frozen_clock):
    settings.RATE_LIMIT_PER_IP = "2/min"
    statuses = [post_event(app_key).status_code for _ in range(3)]

    frozen_clock.shift(29)
    still_limited = post_event(app_key)
    frozen_clock.shift(1)
    next_window = post_event(app_key)

    assert statuses == [200, 200, 429]
    assert (still_limited.status_code, still_limited.headers["Retry-After"]) == (429, "1")
    assert next_window.status_code == 200


def test_other_ips_are_not_held_back_by_a_noisy_one(settings, post_event, app_key):
    settings.RATE_LIMIT_PER_IP = "2/min"
    for _ in range(3):
        post_event(app_key, ip="203.0.113.7")

    assert post_event(app_key, ip="198.51.100.9").status_code == 200


def test_one_key_over_its_limit_gets_429_whatever_the_ip(settings, post_event, app_key, server_key):
    settings.RATE_LIMIT_PER_KEY = "2/min"

    statuses = [post_event(app_key, ip=f"198.51.100.{i}").status_code for i in range(3)]

    assert statuses == [200, 200, 429]
    assert post_event(server_key).status_code == 200  # another key has its own budget


def test_an_empty_rate_means_no_limit(settings, post_event, app_key):
    settings.RATE_LIMIT_PER_IP = ""
    settings.RATE_LIMIT_PER_KEY = ""

    assert {post_event(app_key).status_code for _ in range(30)} == {200}


@pytest.mark.redis
def test_with_redis_every_process_counts_against_the_same_limit(settings, post_event, app_key):
    import redis

    settings.RATE_LIMIT_PER_IP = "5/min"
    assert post_event(app_key, ip="192.0.2.44").status_code == 200
    # Another web process, with its own connection, counts the same window in Redis.
    other_process = redis.Redis.from_url(settings.REDIS_URL)
    counters = [k for k in other_process.scan_iter("herald:rl:ip:192.0.2.44:*")]
    assert len(counters) == 1
    other_process.incrby(counters[0], 4)

    assert post_event(app_key, ip="192.0.2.44").status_code == 429


def test_when_redis_is_down_requests_are_let_through_not_failed(settings, post_event, app_key):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.RATE_LIMIT_PER_IP = "1/min"

    assert [post_event(app_key).status_code for _ in range(3)] == [200, 200, 200]
