"""Rate limits per client IP and per API key: 429 with Retry-After, counted across requests."""

import pytest
from rest_framework.test import APIClient

from tests.devices.conftest import EVENT


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
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


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


@pytest.mark.redis
def test_a_redis_counter_expires_just_after_its_window(settings, post_event, app_key):
    import redis

    settings.RATE_LIMIT_PER_IP = "5/min"
    for _ in range(2):
        assert post_event(app_key, ip="192.0.2.45").status_code == 200

    other_process = redis.Redis.from_url(settings.REDIS_URL)
    (counter,) = other_process.scan_iter("herald:rl:ip:192.0.2.45:*")
    assert other_process.get(counter) == b"2"
    assert 0 < other_process.ttl(counter) <= 61
