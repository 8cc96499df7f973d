"""A plainly valid POST /events or /devices/refresh-token from a remembered key is answered
without DRF (tenants.auth's plain path); everything else goes to the DRF view. The two must
answer byte for byte alike, count every request once against each limit, and take one
round trip to Redis for the failed-authentication budget and both rate limits together."""

import json

import pytest
from rest_framework.test import APIClient

from api import throttling
from devices.models import Device, Event
from devices.views import EventsView, RefreshTokenView
from tenants.auth import PlainWork
from tests.devices.conftest import EVENT

pytestmark = pytest.mark.usefixtures("frozen_clock")


@pytest.fixture
def plain_answers(monkeypatch):
    """Counts the answers the plain path gives, per endpoint."""
    answered = {"events": 0, "refresh": 0}
    for name, view in (("events", EventsView), ("refresh", RefreshTokenView)):
        original = view.plain_prepare

        def counted(*, key, data, _original=original, _name=name):
            work = _original(key=key, data=data)
            if work is None:
                return None

            def answer(result):
                answer = work.answer(result)
                answered[_name] += answer is not None
                return answer

            return PlainWork(answer=answer, then=work.then)

        monkeypatch.setattr(view, "plain_prepare", staticmethod(counted))
    return answered


@pytest.fixture
def without_plain_path(monkeypatch):
    """Sends every request to the DRF view, as before the plain path existed."""

    def off():
        for view in (EventsView, RefreshTokenView):
            monkeypatch.setattr(view, "plain_prepare", staticmethod(lambda *, key, data: None))

    return off


@pytest.fixture
def post(tenant, app_key):
    def post(path, body, *, key=None, ip="203.0.113.7", **extra):
        payload = {"tenant_id": tenant.tenant_id, "api_key": key or app_key, **body}
        return APIClient().post(path, payload, format="json", REMOTE_ADDR=ip, **extra)

    return post


def whole(response) -> tuple:
    return response.status_code, list(response.items()), response.content


def test_a_plain_event_is_answered_byte_for_byte_as_the_drf_view_answers_it(
    post, plain_answers, without_plain_path
):
    post("/events", {**EVENT, "event_name": "first"})  # the key is remembered from here on
    plain = post("/events", EVENT)
    assert plain_answers["events"] == 1

    without_plain_path()
    drf = post("/events", EVENT)  # the same event again: the same fingerprint

    assert plain.status_code == 200
    assert whole(plain) == whole(drf)
    assert Event.objects.count() == 2


def test_a_plain_refresh_is_answered_byte_for_byte_as_the_drf_view_answers_it(
    post, plain_answers, without_plain_path
):
    post("/events", {**EVENT, "device_token": "old"})
    plain = post("/devices/refresh-token", {"old_token": "old", "new_token": "new"})
    assert plain_answers["refresh"] == 1

    without_plain_path()
    drf = post("/devices/refresh-token", {"old_token": "old", "new_token": "new"})  # a retry: 200 again

    assert plain.status_code == 200
    assert whole(plain) == whole(drf)
    assert Device.objects.get().token == "new"


@pytest.mark.parametrize(
    "body",
    [
        {**EVENT, "timezone": "Mars/Olympus"},
        {**EVENT, "event_time": "yesterday"},
        {k: v for k, v in EVENT.items() if k != "session_id"},
        {**EVENT, "params": {"bad": "\x00"}},
        {**EVENT, "api_key": "hrld_app_wrong"},
        {**EVENT, "tenant_id": "someone-else"},
        {**EVENT, "api_key": 7},
    ],
)
def test_what_the_plain_path_does_not_take_is_answered_as_the_drf_view_answers_it(
    post, plain_answers, without_plain_path, body
):
    post("/events", {**EVENT, "event_name": "first"})  # the key is remembered from here on
    post("/events", EVENT)
    through_the_plain_view = post("/events", body)
    assert plain_answers["events"] == 1

    without_plain_path()
    drf = post("/events", body)

    assert through_the_plain_view.status_code in (400, 401)
    assert whole(through_the_plain_view) == whole(drf)
    assert Event.objects.count() == 2


@pytest.mark.parametrize(
    "extra",
    [
        {"HTTP_ACCEPT": "application/json; indent=4"},
        {"HTTP_ACCEPT": "text/html"},
        {"HTTP_ACCEPT": ""},
        {"QUERY_STRING": "format=xml"},
    ],
)
def test_accept_headers_and_queries_the_plain_path_leaves_to_drf_are_answered_as_before(
    post, plain_answers, without_plain_path, extra
):
    post("/events", {**EVENT, "event_name": "first"})
    through_the_plain_view = post("/events", EVENT, **extra)
    assert plain_answers["events"] == 0

    without_plain_path()
    drf = post("/events", EVENT, **extra)

    assert whole(through_the_plain_view) == whole(drf)


def test_the_common_accept_headers_and_a_utf8_charset_take_the_plain_path(
    post, plain_answers, tenant, app_key
):
    post("/events", {**EVENT, "event_name": "first"})
    for accept in ("*/*", "application/json", "application/json, text/plain, */*"):
        assert post("/events", EVENT, HTTP_ACCEPT=accept).status_code == 200
    body = json.dumps({**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key})
    charset = APIClient().post("/events", body, content_type="application/json; charset=utf-8")

    assert charset.status_code == 200
    assert plain_answers["events"] == 4


def test_refresh_errors_from_the_plain_view_are_the_drf_views(post, plain_answers, without_plain_path):
    post("/events", {**EVENT, "device_token": "mine"})
    post("/events", {**EVENT, "device_token": "theirs", "app_user_id": "someone_else"})
    bodies = [
        {"old_token": "nobody-has-it", "new_token": "x"},
        {"old_token": "mine", "new_token": "mine"},
        {"old_token": "mine", "new_token": "theirs", "app_user_id": "user_123"},
    ]
    plain = [post("/devices/refresh-token", body) for body in bodies]
    without_plain_path()
    drf = [post("/devices/refresh-token", body) for body in bodies]

    assert [r.status_code for r in plain] == [404, 400, 409]
    assert [whole(r) for r in plain] == [whole(r) for r in drf]
    assert plain_answers["refresh"] == 0


def test_each_request_counts_once_against_its_limits_whichever_view_answers_it(settings, post):
    settings.RATE_LIMIT_APP_PER_IP = "4/min"
    invalid = {**EVENT, "timezone": "Mars/Olympus"}

    statuses = [post("/events", body).status_code for body in (EVENT, invalid, EVENT, invalid, EVENT)]

    # The first request is the DRF view's (the key is not remembered yet); the 400s are too,
    # after the plain path counted them.
    assert statuses == [200, 400, 200, 400, 429]


def test_a_limit_reached_on_the_plain_path_answers_the_drf_views_429(settings, post, without_plain_path):
    settings.RATE_LIMIT_PER_KEY = "2/min"
    statuses = [post("/events", EVENT, ip=f"198.51.100.{i}").status_code for i in range(2)]
    plain = post("/events", EVENT, ip="198.51.100.7")
    without_plain_path()
    drf = post("/events", EVENT, ip="198.51.100.8")

    assert statuses == [200, 200]
    assert plain.status_code == 429
    assert plain.headers["Retry-After"] == "30"
    assert whole(plain) == whole(drf)


def test_after_too_many_bad_keys_even_a_remembered_key_gets_429_with_cors(settings, rate_limit_clock, post):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_IP = "2/min"
    assert post("/events", EVENT).status_code == 200  # remembered

    failures = [post("/events", EVENT, key="hrld_app_wrong").status_code for _ in range(2)]
    refused = post("/events", EVENT)

    assert failures == [401, 401]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["Retry-After"] == "60"
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert post("/events", EVENT, ip="198.51.100.9").status_code == 200
    assert Event.objects.count() == 1


def test_a_plain_request_takes_one_round_trip_to_redis(post, monkeypatch, plain_answers):
    post("/events", {**EVENT, "event_name": "first"})
    calls = []
    call_redis = throttling._call_redis
    monkeypatch.setattr(throttling, "_call_redis", lambda operation: calls.append(1) or call_redis(operation))

    post("/events", EVENT)
    post("/devices/refresh-token", {"old_token": EVENT["device_token"], "new_token": "rotated"})

    assert plain_answers == {"events": 1, "refresh": 1}
    assert len(calls) == 2


@pytest.mark.redis
def test_with_redis_the_plain_path_counts_in_the_same_counters_as_the_drf_view(settings, post):
    import redis

    settings.RATE_LIMIT_APP_PER_IP = "10/min"
    for _ in range(3):
        assert post("/events", EVENT, ip="192.0.2.46").status_code == 200

    other_process = redis.Redis.from_url(settings.REDIS_URL)
    (counter,) = other_process.scan_iter("herald:rl:appip:*:192.0.2.46:*")
    assert other_process.get(counter) == b"3"
    assert 0 < other_process.ttl(counter) <= 61


@pytest.fixture
def admin_middleware_calls(monkeypatch):
    """Counts the requests that reached the middleware only the admin and the DRF views need."""
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.middleware.csrf import CsrfViewMiddleware

    calls = {"session": 0, "csrf": 0}
    for name, cls, hook in (
        ("session", SessionMiddleware, "process_request"),
        ("csrf", CsrfViewMiddleware, "process_view"),
    ):
        original = getattr(cls, hook)

        def counted(self, request, *args, _original=original, _name=name):
            calls[_name] += 1
            return _original(self, request, *args)

        monkeypatch.setattr(cls, hook, counted)
    return calls


def test_a_plain_answer_is_given_before_the_session_and_csrf_middleware_run(post, admin_middleware_calls):
    post("/events", {**EVENT, "event_name": "first"})  # the DRF view's: the key is not remembered yet
    admin_middleware_calls.update(session=0, csrf=0)

    assert post("/events", EVENT).status_code == 200
    assert (
        post("/devices/refresh-token", {"old_token": EVENT["device_token"], "new_token": "n"}).status_code
        == 200
    )

    assert admin_middleware_calls == {"session": 0, "csrf": 0}


def test_a_request_the_plain_path_does_not_take_goes_down_the_whole_chain_and_is_judged_once(
    post, admin_middleware_calls, monkeypatch
):
    post("/events", {**EVENT, "event_name": "first"})
    admin_middleware_calls.update(session=0, csrf=0)
    asked = []
    original = EventsView.plain_prepare
    monkeypatch.setattr(
        EventsView,
        "plain_prepare",
        staticmethod(lambda *, key, data: asked.append(1) or original(key=key, data=data)),
    )

    response = post("/events", {**EVENT, "timezone": "Mars/Olympus"})

    assert response.status_code == 400
    assert response.json()["field"] == "timezone"
    assert asked == [1]  # by the middleware; the view went straight to DRF
    assert admin_middleware_calls == {"session": 1, "csrf": 1}


def test_metrics_count_a_plain_answer_under_its_route(post, settings):
    from tests.scrape import TOKEN, scrape, value

    settings.METRICS_TOKEN = TOKEN
    post("/events", {**EVENT, "event_name": "first"})
    before = scrape()

    post("/events", EVENT)

    after = scrape()
    labels = {"endpoint": "events", "method": "POST", "status": "200"}
    assert (
        value(after, "herald_api_requests_total", **labels)
        - value(before, "herald_api_requests_total", **labels)
        == 1
    )


def test_the_plain_answer_carries_every_header_the_outer_middleware_gives(post):
    post("/events", {**EVENT, "event_name": "first"})

    response = post("/events", EVENT)

    assert [name for name, _ in response.items()] == [
        "Content-Type",
        "Allow",
        *CORS_HEADER_NAMES,
        "X-Frame-Options",
        "Content-Length",
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
    ]


CORS_HEADER_NAMES = [
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
]


@pytest.mark.parametrize(
    "answer",
    [
        {"fingerprint": "0123456789abcdef0123456789abcdef"},
        {"success": True},
        {"text": "line\u2028paragraph\u2029 é ü 🚀", "number": 1.5, "nothing": None, "list": [1, "x"]},
    ],
)
def test_the_plain_path_renders_an_answer_to_the_bytes_drfs_json_renderer_gives(answer):
    from tenants.auth import _render, _renderer

    assert _render(answer) == _renderer.render(answer, "application/json", {})
