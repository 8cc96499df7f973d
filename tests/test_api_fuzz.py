"""Fuzzing the whole API from its own OpenAPI schema: no 5xx, every answer as documented.

Schemathesis reads ``/api/schema/`` from the WSGI application itself and drives every
operation in-process, with valid and invalid data (examples, boundary values, random
bodies, missing and mistyped fields). Each answer must be a documented status, with a
documented content type and a body that matches the documented schema; invalid input
must be refused with a 4xx.

Twice: with the tenant's credentials (pinned into the schema the fuzzer reads, so that
generated requests get past authentication and reach validation and the services), and
with whatever the fuzzer makes up (so authentication itself is fuzzed).

Beyond what the schema describes, hostile input a JSON schema cannot express is mixed in:
every `date-time` field also gets the calendar's edges and offsets no place has (year 1 and
9999 at an offset that leaves the year, +23:59), and a hook replaces one string of a body,
value or key, anywhere in it, with one holding a lone surrogate ("\\ud800").
"""

import copy
import json
from zoneinfo import available_timezones

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks

from campaigns.models import Campaign
from config.wsgi import application
from devices.models import AppUser, Device
from messaging.models import Delivery, Message
from tenants.codes import COUNTRIES, LANGUAGES
from tenants.models import ApiKey, Tenant, hash_key
from webhooks.models import Endpoint, new_secret

# The checks that judge each answer. `ignored_auth` is left out: the app endpoints take
# their credentials in the body, which OpenAPI cannot describe (the schema names a
# placeholder header), so "accepted without the header" is correct behaviour there.
CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
# Bounded and repeatable: the same cases on every run, a few seconds per operation.
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                # A body over API_MAX_BODY_BYTES (a 1,000-token audience can be) is refused with 413.
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"],
            }
        }
    }
)
BODY_CREDENTIAL_SCHEMAS = ("EventRequest", "RefreshTokenRequest", "PushOpenedRequest")

# --- Hostile input a schema cannot describe ---------------------------------------------------

# Timestamps that parse as RFC 3339 yet fall outside what any clock or database holds: the
# calendar's ends (leaving year 1 or 9999 once converted to UTC), offsets beyond any real zone,
# the edges of Herald's range, and days that do not exist.
CALENDAR_EDGES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-11-23T10:00:00+23:59",
    "2026-11-23T10:00:00-23:59",
    "2026-11-23T10:00:00+14:01",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2099-12-31T23:59:59.999999999Z",
    "2100-01-01T00:00:00Z",
    "2027-02-29T00:00:00Z",
    "2026-12-31T23:59:60Z",
]
schemathesis.openapi.format(
    "date-time",
    st.one_of(
        st.sampled_from(CALENDAR_EDGES),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    ),
)
LONE_SURROGATES = ["\ud800", "a\udfffb", "\udc00\ud800", "ok\ud83d"]


def _string_places(value, path=()) -> list[tuple]:
    """Where a JSON value holds strings: (path, "value") for a string, (path, "key") for a key."""
    places = []
    if isinstance(value, str):
        places.append((path, "value"))
    elif isinstance(value, dict):
        for key, item in value.items():
            places.append(((*path, key), "key"))
            places += _string_places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += _string_places(item, (*path, index))
    return places


def _poisoned(body, place: tuple, surrogate: str):
    """A copy of body whose string (or key) at `place` holds `surrogate`."""
    (path, what), body = place, copy.deepcopy(body)
    if not path:
        return surrogate if what == "value" else body
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    if what == "key":
        parent[f"{path[-1]}{surrogate}"] = parent.pop(path[-1])
    else:
        parent[path[-1]] = f"{parent[path[-1]]}{surrogate}"
    return body


def with_lone_surrogates(context, body):
    """Half of the bodies unchanged; the rest with one string or key, anywhere, poisoned."""
    places = _string_places(body)
    if not places:
        return st.just(body)
    return st.one_of(
        st.just(body),
        st.builds(_poisoned, st.just(body), st.sampled_from(places), st.sampled_from(LONE_SURROGATES)),
    )


# Fixed credentials and objects, known when the tests are generated (at collection, before
# any database exists); the `fuzzed` fixture creates exactly these.
TENANT_ID = "fuzz"
APP_KEY = "hrld_app_fuzz-" + "a" * 32
SERVER_KEY = "hrld_srv_fuzz-" + "s" * 32
APP_USER_ID = "fuzz-user"
DEVICE_TOKEN = "fuzz-device-token"
MESSAGE_ID = 424242
TRACKING_TOKEN = "fuzz-tracking-token"


@pytest.fixture
def in_process_requests():
    """Keep the test's database connection open across requests, as Django's test client does:
    the WSGI handler would close it at the end of every request, inside the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzzed(db, settings, in_process_requests):
    """The tenant the fuzzer acts as, with something to find; another tenant beside it."""
    # Rate limits would turn a fast fuzzer's later requests into 429s; they have tests of their own.
    settings.RATE_LIMIT_PER_IP = settings.RATE_LIMIT_PER_KEY = settings.DEVELOPER_PUSH_RATE = ""
    tenant = Tenant.objects.create(name="Fuzz", tenant_id=TENANT_ID)
    for kind, raw in ((ApiKey.Kind.APP, APP_KEY), (ApiKey.Kind.SERVER, SERVER_KEY)):
        ApiKey.objects.create(tenant=tenant, name=kind, kind=kind, key_hash=hash_key(raw), prefix=raw[:15])
    user = AppUser.objects.create(tenant=tenant, app_user_id=APP_USER_ID, country="TR", language="tr")
    device = Device.objects.create(
        tenant=tenant, user=user, token=DEVICE_TOKEN, platform="android", push_permission=True
    )
    message = Message.objects.create(
        pk=MESSAGE_ID,
        tenant=tenant,
        title="Hello",
        body="World",
        status="sending",
        targeted_count=1,
        fanned_out_at=timezone.now(),
    )
    Delivery.objects.create(message=message, device=device, tracking_token=TRACKING_TOKEN)
    webhook = Endpoint(
        pk=MESSAGE_ID, tenant=tenant, url="https://hooks.example.com/fuzz", event_types=["delivery.sent"]
    )
    webhook.set_secret(new_secret())
    webhook.save()
    Campaign.objects.create(
        pk=MESSAGE_ID,
        tenant=tenant,
        name="Fuzz campaign",
        kind="triggered",
        trigger_event="cart_add",
        content={"language": "en", "variants": [{"title": "Hi", "body": "There"}]},
    )
    other = Tenant.objects.create(name="Other", tenant_id="other")
    Message.objects.create(tenant=other, title="Theirs", body="Not yours", status="completed")
    Campaign.objects.create(tenant=other, name="Theirs", kind="triggered", trigger_event="x")


def published_schema() -> dict:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def with_credentials(raw: dict) -> dict:
    """The published schema, with the body credentials pinned to the fuzzed tenant's and
    examples that name its objects (a message, a user, a token), so cases get past
    authentication and lookups to validation and the services."""
    raw = copy.deepcopy(raw)
    components = raw["components"]["schemas"]
    for name in BODY_CREDENTIAL_SCHEMAS:
        props = components[name]["properties"]
        props["tenant_id"] = {"type": "string", "enum": [TENANT_ID]}
        props["api_key"] = {"type": "string", "enum": [APP_KEY], "writeOnly": True}
    # The schema says "a string" where Herald accepts only names from a list; name a sample
    # of them (the coverage phase tries every value of an enum), or almost no generated
    # event would be valid.
    event = components["EventRequest"]["properties"]
    event["timezone"]["enum"] = sorted(available_timezones())[::40]
    event["language"]["enum"] = sorted(LANGUAGES)[::20]
    event["country"]["enum"] = sorted(COUNTRIES)[::20]
    components["RefreshTokenRequest"]["properties"]["old_token"]["example"] = DEVICE_TOKEN
    components["PushOpenedRequest"]["properties"]["tracking_token"]["example"] = TRACKING_TOKEN
    components["DeveloperPushRequest"]["properties"]["app_user_id"]["example"] = APP_USER_ID
    for operations in raw["paths"].values():
        for operation in operations.values():
            if operation.get("security") == [{"bodyKey": []}]:
                # The credentials are in the body now; the placeholder header the schema names
                # for them (OpenAPI has no way to say "in the body") is not one.
                del operation["security"]
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["example"] = MESSAGE_ID
    return raw


def wsgi(raw: dict):
    """A schemathesis schema whose cases call Herald's WSGI application in-process."""
    schema = schemathesis.openapi.from_dict(raw, config=CONFIG)
    schema.app = application
    return schema


PUBLISHED = published_schema()
authenticated = wsgi(with_credentials(PUBLISHED))
anonymous = wsgi(PUBLISHED)
for _schema in (authenticated, anonymous):
    _schema.hook("flatmap_body")(with_lone_surrogates)


@FUZZ
@authenticated.parametrize()
def test_it_answers_every_authenticated_request_as_documented(case, fuzzed):
    case.headers = {**(case.headers or {}), "X-Server-Key": SERVER_KEY}
    case.call_and_validate(checks=CHECKS)


@FUZZ
@anonymous.parametrize()
def test_it_answers_every_request_without_credentials_as_documented(case, fuzzed):
    case.call_and_validate(checks=CHECKS)


# --- Departures from the contract the fuzzer found, fixed and pinned ---------------------


def test_an_unroutable_message_id_gets_a_json_404(fuzzed):
    response = Client().get("/api/v1/messages/abc", HTTP_X_SERVER_KEY=SERVER_KEY)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"


def test_an_unknown_path_outside_the_admin_gets_a_json_404(fuzzed):
    response = Client().get("/no/such/endpoint")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No endpoint at /no/such/endpoint."}


def test_an_unknown_admin_page_still_gets_an_html_404(fuzzed):
    response = Client().get("/admin/no/such/page/")

    assert response.status_code in (302, 404)  # the admin sends anonymous visitors to log in first
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    "query", [{"page_size": "many"}, {"page_size": "0"}, {"page_size": "-3"}, {"page_size": "²"}]
)
def test_a_malformed_page_size_is_a_400(fuzzed, query):
    response = Client().get("/api/v1/messages", query, HTTP_X_SERVER_KEY=SERVER_KEY)

    assert response.status_code == 400
    assert response.json()["field"] == "page_size"


@pytest.mark.parametrize("page", ["0", "-1", "one"])
def test_a_malformed_page_number_is_a_400(fuzzed, page):
    response = Client().get("/api/v1/messages", {"page": page}, HTTP_X_SERVER_KEY=SERVER_KEY)

    assert response.status_code == 400
    assert response.json()["field"] == "page"


def test_a_page_past_the_last_is_a_documented_404(fuzzed):
    response = Client().get("/api/v1/messages", {"page": "99"}, HTTP_X_SERVER_KEY=SERVER_KEY)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "404" in PUBLISHED["paths"]["/api/v1/messages"]["get"]["responses"]


def test_a_page_size_over_the_cap_is_served_at_the_cap(fuzzed):
    response = Client().get("/api/v1/messages", {"page_size": "5000"}, HTTP_X_SERVER_KEY=SERVER_KEY)

    assert response.status_code == 200


def test_every_rate_limited_operation_documents_429():
    # /metrics is no API endpoint: Prometheus scrapes it, and a throttled scrape is a gap in every graph.
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in PUBLISHED["paths"].items()
        for method, operation in operations.items()
        if "429" not in operation["responses"] and path != "/metrics"
    ]

    assert undocumented == []


# --- Bad input the fuzzer turned up (500s once), pinned ----------------------------------


def event(**fields) -> dict:
    return {
        "tenant_id": TENANT_ID,
        "api_key": APP_KEY,
        "app_user_id": APP_USER_ID,
        "event_name": "opened",
        "event_time": "2026-11-23T10:00:00+03:00",
        "device_token": DEVICE_TOKEN,
        "platform": "android",
        "push_permission_granted": True,
        "timezone": "Europe/Istanbul",
        "language": "tr",
        "country": "TR",
        "session_id": "s1",
        **fields,
    }


@pytest.mark.parametrize("params", [{"k\x00": 1}, {"k": "v\x00"}, {"k": [{"deep": ["\x00"]}]}])
def test_it_refuses_a_nul_character_anywhere_in_event_params(fuzzed, params):
    # PostgreSQL's jsonb cannot store U+0000: storing it was a 500 there.
    response = APIClient().post("/events", event(params=params), format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "params"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/messages", {"title": "Hi", "body": "There", "data": {"k\x00": "v"}}, "data"),
        (
            "/developer/push",
            {"app_user_id": APP_USER_ID, "title": "Hi", "body": "There", "extra_data": {"k\x00": "v"}},
            "extra_data",
        ),
    ],
)
def test_it_refuses_a_nul_character_in_a_push_data_key(fuzzed, path, body, field):
    response = APIClient().post(path, body, format="json", HTTP_X_SERVER_KEY=SERVER_KEY)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Message.objects.filter(title="Hi").exists()


def test_it_refuses_json_nested_too_deep_to_parse(fuzzed):
    # 40 KB of brackets, well under the size limit: the parser's RecursionError was a 500.
    body = json.dumps(event())[:-1] + ', "params": {"k": ' + "[" * 20000 + "]" * 20000 + "}}"

    response = APIClient().post("/events", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": "5"}, "priority"),
        ({"priority": 5.0}, "priority"),
        ({"priority": True}, "priority"),
        ({"ttl_seconds": "60"}, "ttl_seconds"),
        ({"options": {"badge": "1"}}, "options"),
        ({"options": {"analytics_label": 7}}, "options"),
        ({"audience": {"kind": "topic", "topic": 0}}, "audience"),
    ],
)
def test_it_refuses_a_value_of_the_wrong_type_instead_of_coercing_it(fuzzed, fields, field):
    response = APIClient().post(
        "/api/v1/messages",
        {"title": "Hi", "body": "There", **fields},
        format="json",
        HTTP_X_SERVER_KEY=SERVER_KEY,
    )

    assert response.status_code == 400
    assert response.json()["field"] == field
