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
    settings.RATE_LIMIT_APP_PER_IP = "3/min"

    statuses = [post_event(app_key).status_code for _ in range(3)]
    limited = post_event(app_key)

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert limited.headers["Retry-After"] == "30"  # the clock stands at hh:mm:30


def test_the_next_window_starts_a_fresh_count(settings, post_event, app_key, frozen_clock):
    settings.RATE_LIMIT_APP_PER_IP = "2/min"
    statuses = [post_event(app_key).status_code for _ in range(3)]

    frozen_clock.shift(29)
    still_limited = post_event(app_key)
    frozen_clock.shift(1)
    next_window = post_event(app_key)

    assert statuses == [200, 200, 429]
    assert (still_limited.status_code, still_limited.headers["Retry-After"]) == (429, "1")
    assert next_window.status_code == 200


def test_other_ips_are_not_held_back_by_a_noisy_one(settings, post_event, app_key):
    settings.RATE_LIMIT_APP_PER_IP = "2/min"
    for _ in range(3):
        post_event(app_key, ip="203.0.113.7")

    assert post_event(app_key, ip="198.51.100.9").status_code == 200


def test_one_key_over_its_limit_gets_429_whatever_the_ip(settings, post_event, app_key, server_key):
    settings.RATE_LIMIT_PER_KEY = "2/min"

    statuses = [post_event(app_key, ip=f"198.51.100.{i}").status_code for i in range(3)]

    assert statuses == [200, 200, 429]
    assert post_event(server_key).status_code == 200  # another key has its own budget


def test_an_empty_rate_means_no_limit(settings, post_event, app_key):
    settings.RATE_LIMIT_APP_PER_IP = ""
    settings.RATE_LIMIT_PER_KEY = ""

    assert {post_event(app_key).status_code for _ in range(30)} == {200}


@pytest.mark.redis
def test_with_redis_every_process_counts_against_the_same_limit(settings, post_event, app_key):
    import redis

    settings.RATE_LIMIT_APP_PER_IP = "5/min"
    assert post_event(app_key, ip="192.0.2.44").status_code == 200
    # Another web process, with its own connection, counts the same window in Redis.
    other_process = redis.Redis.from_url(settings.REDIS_URL)
    counters = [k for k in other_process.scan_iter("herald:rl:appip:*:192.0.2.44:*")]
    assert len(counters) == 1
    other_process.incrby(counters[0], 4)

    assert post_event(app_key, ip="192.0.2.44").status_code == 429


def test_when_redis_is_down_requests_are_served_and_counted_in_process_memory(settings, post_event, app_key):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.RATE_LIMIT_APP_PER_IP = "2/min"

    assert [post_event(app_key).status_code for _ in range(3)] == [200, 200, 429]


# --- Failed authentication, limited before authentication --------------------------------


def list_messages(key, ip="203.0.113.7"):
    return APIClient().get("/api/v1/messages", HTTP_X_SERVER_KEY=key, REMOTE_ADDR=ip)


def test_after_too_many_bad_server_keys_an_ip_gets_429_even_with_a_good_key(
    settings, rate_limit_clock, server_key
):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_IP = "3/min"

    failures = [list_messages("wrong-key").status_code for _ in range(3)]
    refused = list_messages(server_key)

    assert failures == [401, 401, 401]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["Retry-After"] == "60"
    assert list_messages(server_key, ip="198.51.100.9").status_code == 200  # another IP is fine

    rate_limit_clock.now += 45
    assert list_messages(server_key).headers["Retry-After"] == "15"
    rate_limit_clock.now += 15  # the window has passed
    assert list_messages(server_key).status_code == 200


def test_bad_app_keys_are_limited_per_ip_and_the_429_carries_cors(
    settings, rate_limit_clock, post_event, app_key
):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_IP = "2/min"

    statuses = [post_event("wrong-key").status_code for _ in range(2)]
    refused = post_event(app_key)

    assert statuses == [401, 401]
    assert refused.status_code == 429
    assert refused.headers["Access-Control-Allow-Origin"] == "*"


def test_developer_push_is_limited_by_failures_too(settings, rate_limit_clock, tenant):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_IP = "5/min"
    client = APIClient()
    body = {"app_user_id": "u1", "title": "t", "body": "b"}

    statuses = [
        client.post("/developer/push", body, format="json", HTTP_X_SERVER_KEY=f"guess-{i}").status_code
        for i in range(8)
    ]

    assert statuses == [401] * 5 + [429] * 3


def test_successful_requests_do_not_spend_the_failure_budget(settings, rate_limit_clock, server_key):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_IP = "2/min"

    assert {list_messages(server_key).status_code for _ in range(10)} == {200}
    assert list_messages("wrong-key").status_code == 401


# --- Budgets that fit their callers ------------------------------------------------------------


def test_developer_push_answers_to_its_own_limit_only(settings, rate_limit_clock, server_key):
    settings.RATE_LIMIT_PER_IP = "5/min"
    settings.RATE_LIMIT_PER_KEY = "5/min"
    # Its own budget of 100 (SmartAppPush's is 100/s), over a minute here: a Redis counter
    # expires in real time, and 101 requests on a loaded machine can outlast a second.
    settings.DEVELOPER_PUSH_RATE = "100/min"
    client = APIClient()
    body = {"app_user_id": "nobody", "title": "t", "body": "b"}

    statuses = [
        client.post("/developer/push", body, format="json", HTTP_X_SERVER_KEY=server_key).status_code
        for _ in range(101)
    ]

    assert statuses == [404] * 100 + [429]  # 404: no device; its own 100 is what refuses


def test_the_app_budget_is_per_tenant_and_ip(settings, rate_limit_clock, post_event, app_key):
    from tenants.models import ApiKey, Tenant

    settings.RATE_LIMIT_APP_PER_IP = "2/min"
    other = Tenant.objects.create(name="Other", tenant_id="other")
    other_key = ApiKey.generate(tenant=other, name="app", kind=ApiKey.Kind.APP)[1]
    other_body = {**EVENT, "tenant_id": "other", "api_key": other_key}

    assert [post_event(app_key).status_code for _ in range(3)] == [200, 200, 429]
    # Another tenant's phones behind the same NAT have their own budget.
    other_answer = APIClient().post("/events", other_body, format="json", REMOTE_ADDR="203.0.113.7")
    assert other_answer.status_code == 200


def test_the_app_budget_fits_thousands_of_phones_behind_one_nat(settings):
    from api.throttling import parse_rate

    limit, period = parse_rate(settings.RATE_LIMIT_APP_PER_IP)

    # 5,000 phones behind one carrier address, each sending two events a minute.
    assert limit / period * 60 >= 10_000
    assert parse_rate(settings.RATE_LIMIT_PER_IP)[0] < limit


@pytest.mark.redis
def test_a_redis_counter_expires_just_after_its_window(settings, post_event, app_key):
    import redis

    settings.RATE_LIMIT_APP_PER_IP = "5/min"
    for _ in range(2):
        assert post_event(app_key, ip="192.0.2.45").status_code == 200

    other_process = redis.Redis.from_url(settings.REDIS_URL)
    (counter,) = other_process.scan_iter("herald:rl:appip:*:192.0.2.45:*")
    assert other_process.get(counter) == b"2"
    assert 0 < other_process.ttl(counter) <= 61


@pytest.mark.redis
def test_a_redis_that_does_not_know_the_script_yet_still_counts_every_request(
    settings, post_event, app_key, monkeypatch
):
    import uuid

    import redis

    from api import throttling

    # A script this server has never loaded (as after a restart or SCRIPT FLUSH, which would
    # touch every other user of the server): the call by hash is refused, then loaded and run.
    monkeypatch.setattr(
        throttling, "HIT_UNLESS_SCRIPT", throttling.HIT_UNLESS_SCRIPT + f"-- {uuid.uuid4()}\n"
    )
    settings.RATE_LIMIT_APP_PER_IP = "5/min"
    failures = throttling.breaker.failures

    assert [post_event(app_key, ip="192.0.2.46").status_code for _ in range(2)] == [200, 200]

    other_process = redis.Redis.from_url(settings.REDIS_URL)
    (counter,) = other_process.scan_iter("herald:rl:appip:*:192.0.2.46:*")
    assert other_process.get(counter) == b"2"
    assert throttling.breaker.failures == failures


@pytest.mark.parametrize("proxies", [None, 0, 1, 2])
@pytest.mark.parametrize(
    "forwarded", [None, "", "203.0.113.7", "198.51.100.1, 203.0.113.7", " 10.0.0.1 ,10.0.0.2 "]
)
def test_the_rate_limits_name_a_client_by_the_address_drfs_get_ident_gives(settings, proxies, forwarded):
    from django.test import RequestFactory
    from rest_framework.throttling import BaseThrottle

    from api.throttling import PerTenantIpThrottle, client_ip

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    extra = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    request = RequestFactory().post("/events", REMOTE_ADDR="192.0.2.10", **extra)

    assert client_ip(request) == BaseThrottle().get_ident(request)
    assert PerTenantIpThrottle().get_ident(request) == BaseThrottle().get_ident(request)
