"""Webhooks in the admin: the secret shown once, the attempt log, test events, replays, notices."""

import re

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from webhooks import services
from webhooks.models import Attempt, Endpoint, Event

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant, outsider


def change_url(endpoint):
    return f"/admin/webhooks/endpoint/{endpoint.pk}/change/"


def button(client, endpoint, action):
    return client.post(
        change_url(endpoint), {"CHANGE_FORM-action": action, "_selected_action": endpoint.pk}, follow=True
    )


def test_a_tenant_admin_registers_an_endpoint_and_sees_its_secret_once(tenant_admin, tenant, receiver):
    response = tenant_admin.post(
        "/admin/webhooks/endpoint/add/",
        {
            "tenant": tenant.pk,
            "url": receiver.url,
            "description": "CRM",
            "event_types": ["delivery.sent", "message.completed"],
        },
    )

    page = response.content.decode()
    secret = re.search(r'<code id="hd-new-key">(whsec_[A-Za-z0-9+/=]{40,})</code>', page).group(1)
    endpoint = Endpoint.objects.get()
    assert endpoint.event_types == ["delivery.sent", "message.completed"]
    assert "no-store" in response["Cache-Control"]
    assert secret not in tenant_admin.get(change_url(endpoint)).content.decode()
    # The secret shown is the one posts are signed with.
    services.record_events(
        tenant_id=tenant.pk, event_type="delivery.sent", items=[{"x": 1}], at=endpoint.created_at
    )
    services.deliver_endpoint(endpoint_id=endpoint.pk)
    Webhook(secret).verify(receiver.requests[0]["body"], receiver.requests[0]["headers"])


def test_the_admin_refuses_a_url_on_a_private_address(tenant_admin, tenant):
    response = tenant_admin.post(
        "/admin/webhooks/endpoint/add/",
        {"tenant": tenant.pk, "url": "https://169.254.169.254/latest/", "event_types": ["delivery.sent"]},
    )

    assert response.status_code == 200
    assert b"private, loopback, link-local or reserved" in response.content
    assert not Endpoint.objects.exists()


def test_send_test_event_posts_a_signed_test_event_and_logs_the_attempt(editor, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)

    response = button(editor, endpoint, "send_test_event")

    assert b"Test event to" in response.content and b"HTTP 200" in response.content
    [event] = receiver.events()
    assert event["type"] == "webhook.test"
    Webhook(endpoint.raw_secret).verify(receiver.requests[0]["body"], receiver.requests[0]["headers"])
    attempt = Attempt.objects.get()
    assert (attempt.trigger, attempt.ok, attempt.status_code) == ("test", True, 200)


def test_the_endpoint_page_lists_recent_attempts_with_status_and_latency(viewer, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    receiver.answers = [500]
    services.send_test_event(endpoint=endpoint)

    page = viewer.get(change_url(endpoint)).content.decode()

    assert "HTTP 500" in page and " ms</td>" in page
    assert "secret-internal-response-body" not in page
    log = viewer.get(f"/admin/webhooks/attempt/?endpoint={endpoint.pk}").content.decode()
    assert "HTTP 500" in log and "secret-internal-response-body" not in log


def test_replaying_an_attempt_posts_the_same_batch_with_its_webhook_id(editor, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    services.record_events(
        tenant_id=endpoint.tenant_id, event_type="delivery.sent", items=[{"n": 1}], at=endpoint.created_at
    )
    receiver.answers = [500]
    services.deliver_endpoint(endpoint_id=endpoint.pk)
    attempt = Attempt.objects.get()

    response = editor.post(
        "/admin/webhooks/attempt/", {"action": "replay", "_selected_action": [attempt.pk]}, follow=True
    )

    assert b"Replay of msg_" in response.content
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert attempt.batch.events.count() == 1
    attempt.batch.refresh_from_db()
    assert attempt.batch.status == "delivered"


def test_replaying_an_event_posts_it_again_as_a_new_event(editor, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)
    services.record_events(
        tenant_id=endpoint.tenant_id, event_type="push.opened", items=[{"n": 7}], at=endpoint.created_at
    )
    services.deliver_endpoint(endpoint_id=endpoint.pk)
    event = Event.objects.get()

    editor.post("/admin/webhooks/event/", {"action": "replay", "_selected_action": [event.pk]}, follow=True)

    first, second = receiver.events()
    assert (first["type"], first["data"]) == (second["type"], second["data"]) == ("push.opened", {"n": 7})
    assert first["id"] != second["id"]


def test_a_viewer_may_not_replay_or_send_test_events(viewer, make_endpoint, receiver):
    endpoint = make_endpoint(receiver.url)

    button(viewer, endpoint, "send_test_event")

    assert receiver.requests == []


def test_a_disabled_endpoint_shows_a_notice_with_the_reason(viewer, make_endpoint):
    endpoint = make_endpoint("https://hooks.example.com/x")
    Endpoint.objects.filter(pk=endpoint.pk).update(
        disabled_at=timezone.now(),
        disabled_reason="Every attempt failed for 24 hours (31 attempts; the last: HTTP 503).",
    )

    listing = viewer.get("/admin/webhooks/endpoint/").content.decode()
    page = viewer.get(change_url(endpoint)).content.decode()

    assert "Herald disabled the webhook endpoint https://hooks.example.com/x" in listing
    assert "Every attempt failed for 24 hours" in page and ">disabled<" in page


def test_enable_clears_the_failures(tenant_admin, make_endpoint):
    endpoint = make_endpoint("https://hooks.example.com/x")
    Endpoint.objects.filter(pk=endpoint.pk).update(
        disabled_at=timezone.now(), disabled_reason="x", consecutive_failures=40
    )

    button(tenant_admin, endpoint, "enable")

    endpoint.refresh_from_db()
    assert endpoint.is_enabled and endpoint.consecutive_failures == 0


def test_rotating_the_secret_shows_the_new_one_once(tenant_admin, make_endpoint):
    endpoint = make_endpoint("https://hooks.example.com/x")

    page = button(tenant_admin, endpoint, "rotate_secret").content.decode()

    secret = re.search(r'<code id="hd-new-key">(whsec_[A-Za-z0-9+/=]{40,})</code>', page).group(1)
    endpoint.refresh_from_db()
    assert secret != endpoint.raw_secret
    assert endpoint.signing_secrets(now=timezone.now())[0] == secret
    assert "previous secret" in page


def timezone_now():
    return timezone.now()


def test_staff_of_another_tenant_get_404_for_an_endpoint_and_see_none_of_its_rows(
    outsider, make_endpoint, receiver
):
    endpoint = make_endpoint(receiver.url)
    services.send_test_event(endpoint=endpoint)

    assert outsider.get(change_url(endpoint)).status_code == 404
    assert receiver.url not in outsider.get("/admin/webhooks/endpoint/").content.decode()
    assert receiver.url not in outsider.get("/admin/webhooks/attempt/").content.decode()
    assert receiver.url not in outsider.get("/admin/webhooks/event/").content.decode()
    button(outsider, endpoint, "send_test_event")
    assert len(receiver.requests) == 1
