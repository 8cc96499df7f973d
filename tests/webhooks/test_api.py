"""/api/v1/webhooks: registering, changing, rotating and deleting endpoints with a server key."""

import pytest
from rest_framework.test import APIClient

from api import outbound
from tenants.models import ApiKey, Tenant
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db
URL = "https://hooks.example.com/herald"


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    """hooks.example.com resolves to a public address; other names as the system says."""
    real = outbound.resolve
    monkeypatch.setattr(
        outbound,
        "resolve",
        lambda host, port: ["93.184.216.34"] if host.endswith("example.com") else real(host, port),
    )


@pytest.fixture
def server(server_key):
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=server_key)
    return client


def create(server, **body):
    return server.post(
        "/api/v1/webhooks", {"url": URL, "event_types": ["delivery.sent"], **body}, format="json"
    )


def test_registering_an_endpoint_shows_its_secret_once(server):
    response = create(server, event_types=["message.completed", "delivery.failed"], description="CRM")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["delivery.failed", "message.completed"]
    assert (body["url"], body["description"], body["enabled"]) == (URL, "CRM", True)
    again = server.get(f"/api/v1/webhooks/{body['id']}").json()
    assert "secret" not in again
    assert [e["id"] for e in server.get("/api/v1/webhooks").json()] == [body["id"]]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://127.0.0.1/hook", "private_address"),
        ("https://169.254.169.254/latest/meta-data/", "private_address"),
        ("https://10.0.0.5/hook", "private_address"),
        ("https://[::1]/hook", "private_address"),
        ("http://2130706433/", "https_required"),
        ("https://2130706433/", "private_address"),
        ("http://hooks.example.com/herald", "https_required"),
        ("https://user:pw@hooks.example.com/", "invalid_url"),
        ("not a url", "invalid_url"),
        ("hooks.example.com/herald", "https_required"),
    ],
)
def test_it_refuses_an_unsafe_url_and_stores_nothing(server, url, code):
    response = create(server, url=url)

    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == (code, "url")
    assert not Endpoint.objects.exists()


def test_the_operator_may_allow_private_addresses_and_http(server, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = settings.WEBHOOKS_ALLOW_HTTP = True

    assert create(server, url="http://127.0.0.1:8080/hook").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_types": []}, "event_types"),
        ({"event_types": ["delivery.exploded"]}, "event_types"),
        ({"event_types": "delivery.sent"}, "event_types"),
        ({"url": 42}, "url"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_it_refuses_malformed_fields(server, body, field):
    response = create(server, **body)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Endpoint.objects.exists()


def test_a_tenant_may_have_only_so_many_endpoints(server, settings):
    settings.WEBHOOKS_MAX_ENDPOINTS = 2
    create(server), create(server)

    response = create(server)

    assert response.status_code == 409
    assert response.json()["error"] == "too_many_endpoints"


def test_patch_changes_the_url_and_events_and_can_disable_and_enable(server):
    pk = create(server).json()["id"]

    response = server.patch(
        f"/api/v1/webhooks/{pk}",
        {"url": "https://hooks.example.com/v2", "event_types": ["push.opened"], "enabled": False},
        format="json",
    )

    assert response.status_code == 200
    assert (response.json()["url"], response.json()["event_types"]) == (
        "https://hooks.example.com/v2",
        ["push.opened"],
    )
    assert response.json()["enabled"] is False
    assert response.json()["disabled_reason"] == "Disabled by hand."
    assert server.patch(f"/api/v1/webhooks/{pk}", {"enabled": True}, format="json").json()["enabled"] is True


def test_patch_refuses_an_unsafe_url_and_changes_nothing(server):
    pk = create(server).json()["id"]

    response = server.patch(f"/api/v1/webhooks/{pk}", {"url": "https://169.254.169.254/"}, format="json")

    assert response.status_code == 400
    assert Endpoint.objects.get().url == URL


def test_rotating_the_secret_answers_a_new_one_and_keeps_the_old_one_signing_for_a_while(server):
    created = create(server).json()

    response = server.post(f"/api/v1/webhooks/{created['id']}/rotate-secret")

    assert response.status_code == 200
    assert response.json()["secret"] != created["secret"]
    assert response.json()["previous_secret_expires_at"] is not None
    endpoint = Endpoint.objects.get()
    from django.utils import timezone

    assert endpoint.signing_secrets(now=timezone.now()) == [response.json()["secret"], created["secret"]]


def test_delete_removes_the_endpoint(server):
    pk = create(server).json()["id"]

    assert server.delete(f"/api/v1/webhooks/{pk}").status_code == 204
    assert not Endpoint.objects.exists()
    assert server.get(f"/api/v1/webhooks/{pk}").status_code == 404


def test_another_tenants_endpoint_is_a_404_everywhere(server):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    _, their_key = ApiKey.generate(tenant=other, name="theirs", kind=ApiKey.Kind.SERVER)
    theirs = APIClient()
    theirs.credentials(HTTP_X_SERVER_KEY=their_key)
    pk = create(theirs).json()["id"]

    assert server.get(f"/api/v1/webhooks/{pk}").status_code == 404
    assert server.patch(f"/api/v1/webhooks/{pk}", {"enabled": False}, format="json").status_code == 404
    assert server.post(f"/api/v1/webhooks/{pk}/rotate-secret").status_code == 404
    assert server.get(f"/api/v1/webhooks/{pk}/attempts").status_code == 404
    assert server.delete(f"/api/v1/webhooks/{pk}").status_code == 404
    assert server.get("/api/v1/webhooks").json() == []
    assert Endpoint.objects.get().is_enabled


def test_an_app_key_may_not_manage_webhooks(client, app_key):
    response = client.get("/api/v1/webhooks", HTTP_X_SERVER_KEY=app_key)

    assert response.status_code == 403


def test_attempts_list_status_and_latency_but_never_a_body(server):
    from webhooks.models import Attempt

    pk = create(server).json()["id"]
    Attempt.objects.create(
        endpoint_id=pk, ok=False, status_code=500, latency_ms=12, error="http_status", detail="HTTP 500"
    )

    [attempt] = server.get(f"/api/v1/webhooks/{pk}/attempts").json()

    assert (attempt["status_code"], attempt["latency_ms"], attempt["error"], attempt["ok"]) == (
        500,
        12,
        "http_status",
        False,
    )
