"""What each event looks like, end to end: a real send through the FCM sandbox, real opens and
rotations through the app API, and the signed POSTs a tenant's back end receives."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from standardwebhooks.webhooks import Webhook

from messaging.models import Message
from tenants.models import Tenant
from webhooks.models import Event


def send(server, **body):
    response = server.post("/api/v1/messages", {"title": "Sale", "body": "50% off", **body}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def by_type(receiver, event_type):
    return [e["data"] for e in receiver.events() if e["type"] == event_type]


def test_a_send_through_the_sandbox_posts_signed_delivery_sent_and_message_completed(
    sandbox, server, make_device, receiver, make_endpoint
):
    endpoint = make_endpoint(receiver.url)
    make_device("tok-a", user="alice")
    make_device("tok-b", user="bob", platform="ios")

    message = send(server)

    for post in receiver.requests:
        Webhook(endpoint.raw_secret).verify(post["body"], post["headers"])
    sent = by_type(receiver, "delivery.sent")
    assert sorted((e["app_user_id"], e["platform"]) for e in sent) == [("alice", "android"), ("bob", "ios")]
    assert {e["message_id"] for e in sent} == {message.pk}
    assert {e["delivery_id"] for e in sent} == set(message.deliveries.values_list("pk", flat=True))
    assert all(e["fcm_message_name"].startswith("projects/") for e in sent)
    [completed] = by_type(receiver, "message.completed")
    assert completed | {"completed_at": None} == {
        "message_id": message.pk,
        "status": "completed",
        "targeted": 2,
        "sent": 2,
        "failed": 0,
        "opened": 0,
        "dry_run": False,
        "completed_at": None,
    }
    assert not Event.objects.filter(batch=None).exists()


def test_a_failed_delivery_carries_the_fcm_error_code_and_the_deactivation_its_reason(
    sandbox, server, make_device, receiver, make_endpoint
):
    make_endpoint(receiver.url)
    gone = make_device("sandbox-unregistered-1", user="carol")
    make_device("sandbox-invalid-1", user="dave")

    send(server)

    failed = {e["app_user_id"]: e for e in by_type(receiver, "delivery.failed")}
    assert failed["carol"]["error_code"] == "UNREGISTERED"
    assert failed["dave"]["error_code"] == "INVALID_ARGUMENT"
    [deactivated] = by_type(receiver, "device.deactivated")
    assert (deactivated["device_id"], deactivated["reason"], deactivated["app_user_id"]) == (
        gone.pk,
        "UNREGISTERED",
        "carol",
    )
    [completed] = by_type(receiver, "message.completed")
    assert (completed["status"], completed["failed"]) == ("failed", 2)


def test_an_open_posts_push_opened(sandbox, server, make_device, receiver, make_endpoint, api):
    make_endpoint(receiver.url, event_types=["push.opened"])
    make_device("tok-a", user="alice")
    message = send(server)
    delivery = message.deliveries.get()

    assert api("/pushes/opened", {"tracking_token": delivery.tracking_token}).status_code == 200
    assert api("/pushes/opened", {"tracking_token": delivery.tracking_token}).status_code == 200  # a repeat

    [opened] = receiver.events()
    assert opened["type"] == "push.opened"
    assert (opened["data"]["delivery_id"], opened["data"]["app_user_id"], opened["data"]["message_id"]) == (
        delivery.pk,
        "alice",
        message.pk,
    )


def test_a_token_rotation_posts_device_token_rotated_without_the_tokens(
    sandbox, make_device, receiver, make_endpoint, api
):
    make_endpoint(receiver.url, event_types=["device.token_rotated"])
    device = make_device("tok-old", user="alice")

    response = api(
        "/devices/refresh-token", {"old_token": "tok-old", "new_token": "tok-new", "platform": "android"}
    )

    assert response.status_code == 200, response.content
    [rotated] = receiver.events()
    assert rotated["type"] == "device.token_rotated"
    assert (rotated["data"]["device_id"], rotated["data"]["app_user_id"]) == (device.pk, "alice")
    assert b"tok-new" not in receiver.requests[0]["body"] and b"tok-old" not in receiver.requests[0]["body"]


def test_only_the_subscribed_event_types_of_the_sending_tenant_are_recorded(
    sandbox, server, make_device, receiver, make_endpoint
):
    make_endpoint(receiver.url, event_types=["message.completed"])
    other = Tenant.objects.create(name="Other", tenant_id="other")
    make_endpoint(receiver.url, owner=other)
    make_device("tok-a")

    message = send(server)

    assert [e["type"] for e in receiver.events()] == ["message.completed"]
    assert receiver.events()[0]["data"]["message_id"] == message.pk
    assert Event.objects.count() == 1


def test_a_tenant_without_endpoints_records_no_events(sandbox, server, make_device):
    make_device("tok-a")

    send(server)

    assert not Event.objects.exists()


def test_a_storm_of_deliveries_is_written_in_bulk_and_posted_in_batches(
    sandbox, server, make_device, receiver, make_endpoint, settings
):
    # Results are recorded a hundred at a time (no time-based flush; room for two batches
    # unrecorded: the curl transport sends a batch while it records the one before).
    settings.DELIVERY_RESULT_BATCH, settings.DELIVERY_MAX_UNRECORDED = 100, 200
    settings.DELIVERY_RESULT_INTERVAL = 60
    settings.WEBHOOKS_BATCH_SIZE = 100
    make_endpoint(receiver.url, event_types=["delivery.sent"])
    for i in range(250):
        make_device(f"tok-{i}", user=f"user-{i}")

    with CaptureQueriesContext(connection) as queries:
        send(server)

    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "webhooks_event"')]
    assert len(inserts) == 3  # one per batch of 100 results, not one per delivery
    assert len(receiver.events()) == 250
    assert len(receiver.requests) <= 5
    assert max(len(json.loads(r["body"])["data"]) for r in receiver.requests) <= 100


@pytest.mark.postgres
def test_a_token_rotation_a_webhook_wants_is_recorded_in_the_rotations_transaction(
    postgres_only, make_device, make_endpoint, api
):
    make_endpoint("https://hooks.example.com/herald", event_types=["device.token_rotated"])
    device = make_device("tok-old", user="alice")

    with CaptureQueriesContext(connection) as queries:
        response = api("/devices/refresh-token", {"old_token": "tok-old", "new_token": "tok-new"})

    assert response.status_code == 200, response.content
    sent = [q["sql"] for q in queries.captured_queries if '"webhooks_endpoint"' not in q["sql"]]
    swap = next(i for i, sql in enumerate(sent) if "herald_refresh_token" in sql)
    outbox = next(i for i, sql in enumerate(sent) if sql.startswith('INSERT INTO "webhooks_event"'))
    opened = max(i for i, sql in enumerate(sent[:swap]) if sql.startswith("SAVEPOINT"))
    released = min(i for i, sql in enumerate(sent) if i > outbox and sql.startswith("RELEASE SAVEPOINT"))
    assert opened < swap < outbox < released
    assert Event.objects.get().data["device_id"] == device.pk
