"""The message page shows figures per variant and per language, and lets editors pick a winner."""

import pytest
from django.utils import timezone

from messaging.models import AbTest, Delivery, Message
from messaging.services import fan_out
from tests.messaging.test_variants import A, B, ab_message, localized, many_users


@pytest.fixture
def no_sending(settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


@pytest.fixture
def page(admin_client):
    def page(message):
        response = admin_client.get(f"/admin/messaging/message/{message.pk}/change/")
        assert response.status_code == 200
        return response.content.decode()

    return page


def test_the_message_page_reports_each_variant_and_language_with_its_sample(server, tenant, no_sending, page):
    many_users(tenant, 200)
    body = {"variants": [localized(A, "İndirim A"), localized(B, "İndirim B")]}
    response = server.post("/api/v1/messages", body, format="json")
    message = Message.objects.get(pk=response.json()["id"])
    fan_out(message_id=message.pk)
    message.deliveries.update(status=Delivery.Status.SENT, sent_at=timezone.now())
    b_sent = message.deliveries.filter(variant=1).count()
    ids = list(message.deliveries.filter(variant=1).values_list("pk", flat=True)[:10])
    Delivery.objects.filter(pk__in=ids).update(opened_at=timezone.now())

    html = page(message)

    assert 'id="hd-variants"' in html and 'id="hd-languages"' in html
    assert f"{round(100 * 10 / b_sent, 1)} %" in html
    assert f"n={b_sent}" in html
    assert "Open rate per variant" in html
    assert "written in en, tr" in html


def test_an_editor_picks_the_winner_on_the_message_page(server, tenant, no_sending, admin_client, page):
    many_users(tenant, 50)
    message = ab_message(server)
    fan_out(message_id=message.pk)
    assert 'id="hd-pick-winner"' in page(message)

    response = admin_client.post(f"/admin/messaging/message/{message.pk}/winner/", {"variant": "1"})

    assert response.status_code == 302
    ab = AbTest.objects.get(message=message)
    assert (ab.winner, ab.reason, ab.decided_by.username) == (1, "manual", "admin")
    html = page(message)
    assert "Variant B won" in html and 'id="hd-pick-winner"' not in html
