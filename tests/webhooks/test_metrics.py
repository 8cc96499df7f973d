"""GET /metrics after real sends through the FCM sandbox to a real receiver on 127.0.0.1: the
webhook outbox, its age, the endpoints' states and the POSTs move by exactly what happened."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Message
from tests.scrape import TOKEN, scrape, value
from webhooks import tasks
from webhooks.models import Endpoint, Event


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def send(server) -> Message:
    response = server.post("/api/v1/messages", {"title": "Sale", "body": "50% off"}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def test_the_outbox_fills_while_the_endpoint_rests_and_empties_when_the_webhooks_task_runs(
    sandbox, server, make_device, receiver, make_endpoint, metrics_on
):
    endpoint = make_endpoint(receiver.url)
    # Resting after a failure: the sender that each recording queues finds it too early.
    Endpoint.objects.filter(pk=endpoint.pk).update(retry_at=timezone.now() + timedelta(hours=1))
    make_device("tok-a")
    make_device("tok-b", user="u2")
    before = scrape()

    send(server)

    waiting = scrape()
    assert receiver.requests == []
    assert (
        delta(before, waiting, "herald_webhook_events_recorded_total", type="delivery.sent", tenant="") == 2
    )
    assert (
        delta(before, waiting, "herald_webhook_events_recorded_total", type="message.completed", tenant="")
        == 1
    )
    assert value(waiting, "herald_webhook_outbox_events", state="unbatched") == 3
    assert value(waiting, "herald_webhook_outbox_events", state="pending_batch") == 0
    assert value(waiting, "herald_webhook_endpoints", state="backing_off") == 1
    assert value(waiting, "herald_webhook_endpoints", state="enabled") == 0
    assert value(waiting, "herald_webhook_metrics_database_up") == 1
    # The events were recorded five minutes ago: the oldest has waited that long.
    Event.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert 300 <= value(scrape(), "herald_webhook_outbox_oldest_seconds") < 330

    Endpoint.objects.filter(pk=endpoint.pk).update(retry_at=None)
    tasks.deliver_webhooks.enqueue(endpoint.pk)

    after = scrape()
    assert len(receiver.events()) == 3
    assert value(after, "herald_webhook_outbox_events", state="unbatched") == 0
    assert value(after, "herald_webhook_outbox_events", state="pending_batch") == 0
    assert value(after, "herald_webhook_outbox_oldest_seconds") == 0
    assert value(after, "herald_webhook_endpoints", state="enabled") == 1
    assert delta(waiting, after, "herald_webhook_attempts_total", outcome="ok", tenant="") == 1
    assert delta(waiting, after, "herald_webhook_request_duration_seconds_count", outcome="ok") == 1
    assert delta(waiting, after, "herald_webhook_attempts_total", outcome="http_status", tenant="") == 0


def test_a_failing_receiver_counts_an_http_error_and_leaves_its_batch_waiting(
    sandbox, server, make_device, receiver, make_endpoint, metrics_on
):
    make_endpoint(receiver.url)
    receiver.answers = [500]
    make_device("tok-a")
    before = scrape()

    send(server)

    after = scrape()
    assert len(receiver.requests) == 1
    assert delta(before, after, "herald_webhook_attempts_total", outcome="http_status", tenant="") == 1
    assert delta(before, after, "herald_webhook_request_duration_seconds_count", outcome="http_status") == 1
    assert delta(before, after, "herald_webhook_attempts_total", outcome="ok", tenant="") == 0
    # The failed batch (delivery.sent) waits for its retry; message.completed, recorded while the
    # endpoint rests, waits unbatched behind it.
    assert value(after, "herald_webhook_outbox_events", state="pending_batch") == 1
    assert value(after, "herald_webhook_outbox_events", state="unbatched") == 1
    assert value(after, "herald_webhook_endpoints", state="backing_off") == 1


def test_webhook_counters_carry_the_tenant_only_when_the_operator_asks(
    sandbox, server, make_device, receiver, make_endpoint, metrics_on, settings
):
    settings.METRICS_TENANT_LABEL = True
    make_endpoint(receiver.url, event_types=["delivery.sent"])
    make_device("tok-a")
    before = scrape()

    send(server)

    after = scrape()
    assert (
        delta(before, after, "herald_webhook_events_recorded_total", type="delivery.sent", tenant="acme") == 1
    )
    assert delta(before, after, "herald_webhook_attempts_total", outcome="ok", tenant="acme") == 1
    assert delta(before, after, "herald_webhook_attempts_total", outcome="ok", tenant="") == 0


def test_a_disabled_endpoints_backlog_is_counted_but_does_not_age_the_outbox(db, make_endpoint, metrics_on):
    endpoint = make_endpoint("https://hooks.example.com/herald")
    Endpoint.objects.filter(pk=endpoint.pk).update(disabled_at=timezone.now(), disabled_reason="failing")
    Event.objects.create(
        endpoint=endpoint, type="delivery.sent", data={}, created_at=timezone.now() - timedelta(hours=3)
    )

    samples = scrape()

    assert value(samples, "herald_webhook_outbox_events", state="unbatched") == 1
    assert value(samples, "herald_webhook_outbox_oldest_seconds") == 0
    assert value(samples, "herald_webhook_endpoints", state="disabled") == 1
    assert value(samples, "herald_webhook_endpoints", state="enabled") == 0
