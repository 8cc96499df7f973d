"""POST /events rejects bad input with a JSON error naming the field, and writes nothing."""

import json

import pytest

from devices.models import AppUser, Device, Event

REQUIRED = [
    "event_name",
    "event_time",
    "device_token",
    "platform",
    "push_permission_granted",
    "timezone",
    "language",
    "country",
    "session_id",
]


def assert_nothing_written():
    assert (Device.objects.count(), AppUser.objects.count(), Event.objects.count()) == (0, 0, 0)


@pytest.mark.parametrize("field", REQUIRED)
def test_a_missing_required_field_is_a_400_naming_it(api, event_body, field):
    del event_body[field]

    response = api("/events", event_body)

    assert response.status_code == 400
    assert response.json()["error"] == "missing_field"
    assert response.json()["field"] == field
    assert field in response.json()["detail"]
    assert_nothing_written()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_time", "2026-11-23T10:15:00"),  # no offset
        ("event_time", "2026-11-23"),
        ("event_time", "23/11/2026 10:15"),
        ("event_time", "2026-13-40T10:15:00Z"),
        ("event_time", 1763892900),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "+03:00"),
        ("language", "turkish"),
        ("language", "xx"),
        ("country", "TUR"),
        ("country", "ZZ"),
        ("platform", "windows"),
        ("push_permission_granted", "true"),
        ("push_permission_granted", 1),
        ("device_token", "x" * 4097),
        ("device_token", ""),
        ("device_token", 12345),
        ("session_id", 42),
        ("event_name", ""),
        ("event_name", ["app_opened"]),
        ("app_user_id", 123),
        ("params", ["not", "an", "object"]),
        ("params", "screen=home"),
    ],
)
def test_a_malformed_field_is_a_400_naming_it(api, event_body, field, value):
    event_body[field] = value

    response = api("/events", event_body)

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_field"
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    assert_nothing_written()


def test_a_token_of_exactly_4096_characters_is_accepted(api, event_body):
    event_body["device_token"] = "t" * 4096

    assert api("/events", event_body).status_code == 200
    assert Device.objects.get().token == "t" * 4096


@pytest.mark.parametrize(
    "event_time",
    [
        "2026-11-23T10:15:00Z",
        "2026-11-23T10:15:00.123456789+05:30",
        "2026-11-23t10:15:00z",
    ],
)
def test_any_rfc3339_time_with_an_offset_is_accepted(api, event_body, event_time):
    event_body["event_time"] = event_time

    assert api("/events", event_body).status_code == 200


def test_malformed_json_is_a_400(client):
    response = client.post("/events", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_a_body_that_is_not_an_object_is_a_400(client):
    response = client.post("/events", data="[1, 2]", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_nan_is_not_json(api, client, tenant, app_key, event_body):
    raw = json.dumps({**event_body, "tenant_id": tenant.tenant_id, "api_key": app_key})
    raw = raw.replace('"count": 3', '"count": NaN')

    response = client.post("/events", data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


def test_an_oversized_body_is_a_413(api, event_body, settings):
    event_body["params"] = {"blob": "x" * (settings.API_MAX_BODY_BYTES + 1)}

    response = api("/events", event_body)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert_nothing_written()


def test_a_form_encoded_body_is_a_415(client, tenant, app_key):
    response = client.post("/events", {"tenant_id": tenant.tenant_id, "api_key": app_key})

    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_get_is_not_allowed(client):
    response = client.get("/events")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_unknown_fields_are_ignored_as_smartapppush_does(api, event_body):
    # Apps may send fields Herald does not know (app_version, say); that is no error.
    assert api("/events", {**event_body, "app_version": "1.2.3"}).status_code == 200


def test_params_may_hold_null_at_the_top_level_as_anywhere_else(api, event_body):
    params = {"coupon": None, "cart": {"note": None}, "tags": [None]}

    response = api("/events", {**event_body, "params": params})

    assert response.status_code == 200, response.content
    assert Event.objects.get().params == params
