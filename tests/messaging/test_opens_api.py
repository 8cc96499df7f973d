"""POST /pushes/opened: the app reports a tap; the message's open rate follows."""

import base64

import pytest
from django.utils.crypto import salted_hmac
from rest_framework.test import APIClient

from messaging.models import Message, delivery_id_of, derived_tracking_token
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


@pytest.mark.parametrize("alter", ["one character", "the id in the clear"])
def test_an_altered_or_forged_token_is_not_found(delivered, api, alter):
    message, tokens = delivered
    token = tokens[0]
    if alter == "one character":
        forged = token[:5] + ("B" if token[5] == "A" else "A") + token[6:]
    else:  # the signed form's shape around a delivery's real id, with a made-up MAC
        forged = f"{message.deliveries.order_by('pk').first().pk}_{'A' * 16}"

    response = api("/pushes/opened", {"tracking_token": forged})

    assert response.status_code == 404
    message.refresh_from_db()
    assert message.opened_count == 0


def test_only_this_server_reads_its_tracking_tokens(delivered, settings):
    message, tokens = delivered
    assert sorted(map(delivery_id_of, tokens)) == sorted(message.deliveries.values_list("pk", flat=True))

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "another-key-" + "y" * 50, []

    assert [delivery_id_of(token) for token in tokens] == [None, None]


def test_a_tracking_token_does_not_show_its_delivery_id():
    """An install must not count the server's deliveries from the tokens it receives."""
    ids = range(10_000, 10_200)
    tokens = [derived_tracking_token(delivery_id) for delivery_id in ids]

    assert not [token for delivery_id, token in zip(ids, tokens, strict=True) if str(delivery_id) in token]
    assert len({token[:3] for token in tokens}) > 150  # neighbours share no prefix either
    assert [delivery_id_of(token) for token in tokens] == list(ids)


def test_a_push_sent_with_a_signed_token_before_tokens_were_encrypted_is_still_opened(
    delivered, api, settings
):
    message, _ = delivered
    delivery = message.deliveries.order_by("pk").first()
    mac = salted_hmac(
        "herald.messaging.tracking_token", str(delivery.pk), secret=settings.SECRET_KEY, algorithm="sha256"
    )
    signed = f"{delivery.pk}_{base64.urlsafe_b64encode(mac.digest()[:12]).decode()}"  # as pushes carried it

    response = api("/pushes/opened", {"tracking_token": signed})

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.opened_at is not None


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
