"""GET /metrics after real sends through the FCM sandbox: the numbers move by exactly what happened."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Message
from tests.scrape import TOKEN, scrape, value


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def send(server, **body) -> Message:
    response = server.post("/api/v1/messages", {"title": "Sale", "body": "50% off", **body}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def test_a_send_through_the_sandbox_moves_each_counter_by_exactly_what_happened(
    sandbox, server, make_device, api, metrics_on
):
    make_device("tok-a")
    make_device("tok-b", user="u2")
    make_device("sandbox-unregistered-1", user="u3")
    make_device("sandbox-unavailable-1", user="u4")
    before = scrape()

    assert (
        api(
            "/events",
            {
                "app_user_id": "u5",
                "event_name": "app_open",
                "event_time": "2026-11-23T10:00:00+03:00",
                "device_token": "tok-new",
                "platform": "android",
                "push_permission_granted": True,
                "timezone": "Europe/Istanbul",
                "language": "tr",
                "country": "TR",
                "session_id": "s1",
            },
        ).status_code
        == 200
    )
    rotated = api("/devices/refresh-token", {"old_token": "tok-new", "new_token": "tok-newer"})
    assert rotated.status_code == 200
    message = send(
        server,
        audience={
            "kind": "tokens",
            "tokens": ["tok-a", "tok-b", "sandbox-unregistered-1", "sandbox-unavailable-1"],
        },
    )
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("herald_events_recorded_total") == 1
    assert delta("herald_token_rotations_total") == 1
    assert delta("herald_deliveries_total", outcome="sent", error_code="", tenant="") == 2
    assert delta("herald_deliveries_total", outcome="failed", error_code="UNREGISTERED", tenant="") == 1
    assert delta("herald_delivery_retries_scheduled_total", error_code="UNAVAILABLE", tenant="") == 1
    assert delta("herald_fcm_request_duration_seconds_count", outcome="200") == 2
    assert delta("herald_fcm_request_duration_seconds_count", outcome="404") == 1
    assert delta("herald_fcm_request_duration_seconds_count", outcome="503") == 1
    assert delta("herald_fcm_access_token_fetches_total", outcome="ok") == 1
    assert delta("herald_api_requests_total", endpoint="events", method="POST", status="200") == 1
    assert delta("herald_api_requests_total", endpoint="refresh-token", method="POST", status="200") == 1
    assert delta("herald_api_requests_total", endpoint="messages", method="POST", status="202") == 1
    assert delta("herald_api_request_duration_seconds_count", endpoint="messages", method="POST") == 1
    # Gauges read from the database: the retry waits, so the message is still sending.
    assert value(after, "herald_delivery_queue_depth", status="retrying") == 1
    assert value(after, "herald_delivery_queue_depth", status="pending") == 0
    assert value(after, "herald_delivery_queue_oldest_due_seconds") == 0
    assert value(after, "herald_messages", status="sending") == 1
    assert value(after, "herald_metrics_database_up") == 1

    # Once the retry is overdue by five minutes, the queue's age says so.
    message.deliveries.filter(status="retrying").update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert 300 <= value(scrape(), "herald_delivery_queue_oldest_due_seconds") < 330


def test_deliveries_carry_the_tenant_only_when_the_operator_asks(
    sandbox, server, make_device, metrics_on, settings
):
    settings.METRICS_TENANT_LABEL = True
    make_device("tok-a")
    before = scrape()

    send(server)

    after = scrape()
    labels = {"outcome": "sent", "error_code": "", "tenant": "acme"}
    assert (
        value(after, "herald_deliveries_total", **labels) - value(before, "herald_deliveries_total", **labels)
        == 1
    )


def test_a_cancelled_message_counts_its_unsent_deliveries_as_cancelled(
    sandbox, server, make_device, metrics_on
):
    make_device("sandbox-unavailable-1")
    message = send(server)  # the one delivery waits for its retry
    before = scrape()

    assert server.post(f"/api/v1/messages/{message.pk}/cancel").status_code == 200

    after = scrape()
    labels = {"outcome": "failed", "error_code": "CANCELLED", "tenant": ""}
    assert (
        value(after, "herald_deliveries_total", **labels) - value(before, "herald_deliveries_total", **labels)
        == 1
    )
    assert value(after, "herald_messages", status="cancelled") == 1
    assert value(after, "herald_delivery_queue_depth", status="retrying") == 0
