"""POST /pushes/opened: the app reports a tap; the message's open rate follows."""

import pytest
from rest_framework.test import APIClient

from messaging.models import Message
from tenants.models import ApiKey, Tenant
from tests.conftest import OMIT


@pytest.fixture
def delivered(sandbox, server, make_device, inbox):
    """A message sent to two devices; returns (message, tracking tokens as the devices received them)."""
    make_device("tok-a")
    make_device("tok-b", user="u2")
    response = server.post("/api/v1/messages", {"title": "Hi", "body": "There"}, format="json")
    message = Message.objects.get(pk=response.json()["id"])
    tokens = [m[0]["data"]["tracking_token"] for m in inbox().values()]
    return message, tokens


def test_an_open_marks_the_delivery_and_counts_toward_the_open_rate(delivered, api, server):
    message, tokens = delivered

    response = api("/pushes/opened", {"tracking_token": tokens[0]})

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert next(d for d in message.deliveries.all() if d.tracking_token == tokens[0]).opened_at is not None
    body = server.get(f"/api/v1/messages/{message.pk}").json()
    assert body["counts"]["opened"] == 1
    assert body["open_rate"] == 0.5


def test_a_repeated_open_is_harmless_and_counted_once(delivered, api):
    message, tokens = delivered

    statuses = [api("/pushes/opened", {"tracking_token": tokens[0]}).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    message.refresh_from_db()
    assert message.opened_count == 1


def test_a_missing_tracking_token_is_a_400(delivered, api):
    response = api("/pushes/opened", {"tracking_token": OMIT})

    assert response.status_code == 400
    assert response.json()["field"] == "tracking_token"


def test_bad_credentials_are_a_401(delivered, api):
    _, tokens = delivered

    assert api("/pushes/opened", {"tracking_token": tokens[0], "api_key": "nope"}).status_code == 401


def test_another_tenants_tracking_token_is_not_found(delivered):
    message, tokens = delivered
    other = Tenant.objects.create(name="Other", tenant_id="other")
    key = ApiKey.generate(tenant=other, name="app", kind="app")[1]

    response = APIClient().post(
        "/pushes/opened", {"tenant_id": "other", "api_key": key, "tracking_token": tokens[0]}, format="json"
    )

    assert response.status_code == 404
    message.refresh_from_db()
    assert message.opened_count == 0


def test_a_token_whose_mac_does_not_hold_is_not_found(delivered, api):
    message, tokens = delivered
    delivery_id, mac = tokens[0].split("_", 1)
    forged = f"{delivery_id}_{'A' * len(mac)}" if mac != "A" * len(mac) else f"{delivery_id}_{'B' * len(mac)}"

    response = api("/pushes/opened", {"tracking_token": forged})

    assert response.status_code == 404
    message.refresh_from_db()
    assert message.opened_count == 0


def test_a_token_stored_before_tokens_were_derived_still_marks_its_delivery_opened(delivered, api):
    message, _ = delivered
    delivery = message.deliveries.order_by("pk").first()
    delivery.tracking_token = "k7Qx3nL0pV9sR2tY6wZ1aB"  # random, as deliveries were given one
    delivery.save(update_fields=["stored_tracking_token"])

    response = api("/pushes/opened", {"tracking_token": "k7Qx3nL0pV9sR2tY6wZ1aB"})

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.opened_at is not None
    message.refresh_from_db()
    assert message.opened_count == 1


def test_a_push_sent_before_a_secret_key_rotation_is_opened_while_the_old_key_is_a_fallback(
    delivered, api, settings
):
    message, tokens = delivered
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-key-" + "x" * 50, [old_key]

    assert api("/pushes/opened", {"tracking_token": tokens[0]}).status_code == 200

    settings.SECRET_KEY_FALLBACKS = []
    assert api("/pushes/opened", {"tracking_token": tokens[1]}).status_code == 404
    message.refresh_from_db()
    assert message.opened_count == 1
