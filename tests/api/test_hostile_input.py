"""Hostile input on every API endpoint: a 400 naming the field, a JSON 413, never a 500."""

import io
import json

import pytest
from django.test import Client, RequestFactory

from api.middleware import BodySizeLimitMiddleware
from devices.models import Event
from messaging.models import Message

pytestmark = pytest.mark.usefixtures("immediate_tasks")

APP_ENDPOINTS = ["/events", "/devices/refresh-token", "/pushes/opened"]
EVERY_POST = [*APP_ENDPOINTS, "/developer/push", "/api/v1/messages"]


@pytest.fixture
def immediate_tasks(settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


def event(tenant, app_key, **fields) -> dict:
    return {
        "tenant_id": tenant.tenant_id,
        "api_key": app_key,
        "app_user_id": "ayse",
        "event_name": "opened",
        "event_time": "2026-11-23T10:00:00+03:00",
        "device_token": "tok-1",
        "platform": "android",
        "push_permission_granted": True,
        "timezone": "Europe/Istanbul",
        "language": "tr",
        "country": "TR",
        "session_id": "s1",
        **fields,
    }


def post_raw(path: str, text: str, **headers):
    return Client().post(path, text, content_type="application/json", **headers)


# --- Lone surrogates: JSON's "\ud800" is a str that cannot be encoded or stored ------------

SURROGATE = "\\ud800"  # as the client writes it inside a JSON string


@pytest.mark.parametrize(
    ("field", "fragment"),
    [
        ("api_key", f'"api_key": "k{SURROGATE}"'),
        ("tenant_id", f'"tenant_id": "{SURROGATE}"'),
        ("params", f'"params": {{"k{SURROGATE}": 1}}'),
        ("params", f'"params": {{"k": "v{SURROGATE}"}}'),
        ("params", f'"params": {{"k": [{{"deep": "{SURROGATE}"}}]}}'),
        ("event_name", f'"event_name": "{SURROGATE}x"'),
    ],
)
def test_a_lone_surrogate_anywhere_in_an_event_is_a_400_naming_the_field(tenant, app_key, field, fragment):
    body = json.dumps(event(tenant, app_key))[:-1] + ", " + fragment + "}"

    response = post_raw("/events", body)

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Event.objects.exists()


PUSH = '"title": "t", "body": "b"'


@pytest.mark.parametrize(
    ("path", "text", "field"),
    [
        ("/api/v1/messages", f'{{"title": "t", "body": "b", "data": {{"k{SURROGATE}": "v"}}}}', "data"),
        (
            "/developer/push",
            f'{{"app_user_id": "u", {PUSH}, "extra_data": {{"{SURROGATE}": ""}}}}',
            "extra_data",
        ),
        ("/developer/push", f'{{"app_user_id": "u", "title": "t{SURROGATE}", "body": "b"}}', "title"),
    ],
)
def test_a_lone_surrogate_in_a_push_is_a_400_naming_the_field(server_key, path, text, field):
    response = post_raw(path, text, HTTP_X_SERVER_KEY=server_key)

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Message.objects.exists()


def test_a_lone_surrogate_written_in_capitals_is_a_400_too(tenant, app_key):
    body = json.dumps(event(tenant, app_key))[:-1] + ', "params": {"k": "\\uDBFF"}}'

    response = post_raw("/events", body)

    assert response.status_code == 400, response.content
    assert response.json()["field"] == "params"


def test_an_escaped_backslash_before_ud800_is_text_and_welcome(tenant, app_key):
    body = json.dumps(event(tenant, app_key, event_name="\\ud800"))  # a backslash, then "ud800"

    assert post_raw("/events", body).status_code == 200
    assert Event.objects.get().name == "\\ud800"


def test_a_proper_surrogate_pair_is_an_emoji_and_welcome(tenant, app_key):
    body = json.dumps(event(tenant, app_key, event_name="\U0001f600"))  # written as "\ud83d\ude00"

    assert post_raw("/events", body).status_code == 200


# --- Dates: the calendar's edges and offsets no place on Earth has ----------------------------


@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-11-23T10:00:00+23:59",
        "2026-11-23T10:00:00-15:00",
        "1969-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
    ],
)
def test_an_event_time_out_of_range_is_a_400_naming_it(tenant, app_key, when):
    response = Client().post(
        "/events", event(tenant, app_key, event_time=when), content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["field"] == "event_time"
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "when",
    [
        "1970-01-01T00:00:00Z",
        "2026-11-23T10:00:00+14:00",
        "2026-11-23T10:00:00-12:00",
        "2099-12-31T23:59:59.999999999Z",
    ],
)
def test_an_event_time_within_range_is_recorded(tenant, app_key, when):
    response = Client().post(
        "/events", event(tenant, app_key, event_time=when), content_type="application/json"
    )

    assert response.status_code == 200, response.content


# --- Bodies too large: the JSON 413, before anything reads them ---------------------------------


@pytest.mark.parametrize("path", EVERY_POST)
@pytest.mark.parametrize("size", [64 * 1024 + 1, 3_000_000])
def test_a_body_over_the_limit_gets_the_json_413_on_every_endpoint(server_key, path, size):
    response = Client().post(path, "x" * size, content_type="application/json", HTTP_X_SERVER_KEY=server_key)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "payload_too_large"


def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(db):
    body = io.BytesIO(b"{}")
    request = RequestFactory().post("/events", b"{}", content_type="application/json")
    request.META.update({"CONTENT_LENGTH": str(10**9), "wsgi.input": body})

    response = BodySizeLimitMiddleware(lambda request: pytest.fail("the view ran"))(request)

    assert response.status_code == 413
    assert body.tell() == 0


def chunked(path: str, payload: bytes, **headers):
    """A request with no Content-Length (Transfer-Encoding: chunked, as gunicorn hands it on)."""
    return Client().generic(
        "POST",
        path,
        b"",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(payload)},
        **headers,
    )


def test_a_chunked_body_over_the_limit_gets_the_json_413(db):
    response = chunked("/events", b"[" * 200_000)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_a_chunked_body_within_the_limit_is_read(tenant, app_key):
    response = chunked("/events", json.dumps(event(tenant, app_key)).encode())

    assert response.status_code == 200, response.content


# --- Body credentials: missing or malformed is a 400 naming the field; only a wrong pair is a 401 ---


@pytest.mark.parametrize("path", APP_ENDPOINTS)
@pytest.mark.parametrize("field", ["tenant_id", "api_key"])
@pytest.mark.parametrize(
    ("value", "error"),
    [(None, "missing_field"), (123, "invalid_field"), ({}, "invalid_field"), ("", "invalid_field")],
)
def test_a_missing_or_malformed_credential_is_a_400_naming_it(tenant, app_key, path, field, value, error):
    body = {"tenant_id": tenant.tenant_id, "api_key": app_key, field: value}
    if value is None:
        del body[field]

    response = Client().post(path, body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert (response.json()["error"], response.json()["field"]) == (error, field)


@pytest.mark.parametrize("path", APP_ENDPOINTS)
def test_an_empty_body_is_a_400_naming_tenant_id(db, path):
    response = Client().post(path, "", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["field"] == "tenant_id"


@pytest.mark.parametrize("path", APP_ENDPOINTS)
def test_a_well_formed_but_wrong_pair_is_still_a_401(tenant, app_key, path):
    response = Client().post(
        path, {"tenant_id": tenant.tenant_id, "api_key": "hrld_app_wrong"}, content_type="application/json"
    )

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
