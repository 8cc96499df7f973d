"""Sending through FCM (the sandbox, over real HTTP): audiences, payloads, errors, retries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices.models import Device
from messaging.models import Delivery, Message
from messaging.services import recover_stalled


def send(server, **body):
    response = server.post("/api/v1/messages", {"title": "Sale", "body": "50% off", **body}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def make_due(message):
    """Pretend the retry delay has passed."""
    message.deliveries.filter(status="retrying").update(next_attempt_at=timezone.now() - timedelta(minutes=5))


def test_a_message_to_all_reaches_every_targetable_device(sandbox, server, make_device, inbox):
    make_device("tok-a")
    make_device("tok-b", platform="ios")
    make_device("tok-muted", permission=False)
    make_device("tok-gone", is_active=False, deactivated_at=timezone.now())

    message = send(server)

    message.refresh_from_db()
    assert message.status == "completed"
    assert (message.targeted_count, message.sent_count, message.failed_count) == (2, 2, 0)
    assert set(inbox()) == {"tok-a", "tok-b"}
    assert all(d.fcm_message_name.startswith("projects/") for d in message.deliveries.all())


def test_devices_receive_a_data_only_message_with_a_tracking_token(sandbox, server, make_device, inbox):
    make_device("tok-a")

    message = send(server, data={"deep_link": "app://sale"})

    [fcm_message] = inbox()["tok-a"]
    assert "notification" not in fcm_message
    assert fcm_message["data"] == {
        "title": "Sale",
        "body": "50% off",
        "deep_link": "app://sale",
        "tracking_token": message.deliveries.get().tracking_token,
    }


def test_a_notification_message_carries_a_notification_block(sandbox, server, make_device, inbox):
    make_device("tok-a")

    send(server, data_only=False, image_url="https://example.com/a.png")

    [fcm_message] = inbox()["tok-a"]
    assert fcm_message["notification"]["title"] == "Sale"
    assert fcm_message["notification"]["image"] == "https://example.com/a.png"


def test_a_high_priority_message_is_high_priority_on_android_and_apns(sandbox, server, make_device, inbox):
    make_device("tok-a")

    send(server, priority=9, data_only=False)

    [fcm_message] = inbox()["tok-a"]
    assert fcm_message["android"]["priority"].upper() == "HIGH"
    assert fcm_message["apns"]["headers"]["apns-priority"] == "10"


def test_a_data_only_push_is_an_apns_background_push_at_priority_5(sandbox, server, make_device, inbox):
    # Apple refuses background pushes at priority 10; Android still gets HIGH.
    make_device("tok-a")

    send(server, priority=9)

    [fcm_message] = inbox()["tok-a"]
    assert fcm_message["android"]["priority"].upper() == "HIGH"
    assert fcm_message["apns"]["headers"]["apns-priority"] == "5"
    assert fcm_message["apns"]["payload"]["aps"]["content-available"] == 1


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        ({"kind": "filter", "platforms": ["ios"]}, {"ios-tr"}),
        ({"kind": "filter", "countries": ["de"]}, {"android-de"}),
        ({"kind": "filter", "languages": ["tr"], "platforms": ["android"]}, {"android-tr"}),
        ({"kind": "users", "app_user_ids": ["u-de"]}, {"android-de"}),
        ({"kind": "tokens", "tokens": ["ios-tr", "not-registered"]}, {"ios-tr"}),
    ],
)
def test_each_audience_reaches_exactly_its_devices(sandbox, server, make_device, inbox, audience, expected):
    make_device("android-tr", user="u-tr", country="TR", language="tr")
    make_device("ios-tr", user="u-tr2", platform="ios", country="TR", language="tr")
    make_device("android-de", user="u-de", country="DE", language="de")

    send(server, audience=audience)

    assert set(inbox()) == expected


def test_a_topic_message_is_one_send_to_the_topic(sandbox, server, make_device, inbox):
    make_device("tok-a")

    message = send(server, audience={"kind": "topic", "topic": "news"})

    message.refresh_from_db()
    assert message.status == "completed"
    assert (message.targeted_count, message.sent_count) == (1, 1)
    assert list(inbox()) == ["news"]


def test_a_condition_message_is_sent_to_the_condition(sandbox, server, inbox):
    send(server, audience={"kind": "condition", "condition": "'news' in topics && 'tr' in topics"})

    assert list(inbox()) == ["'news' in topics && 'tr' in topics"]


def test_unregistered_and_mismatched_tokens_deactivate_their_devices(sandbox, server, make_device):
    make_device("tok-ok")
    gone = make_device("sandbox-unregistered-1", user="u2")
    foreign = make_device("sandbox-sender-mismatch-1", user="u3")

    message = send(server)

    message.refresh_from_db()
    assert message.status == "completed_with_failures"
    assert (message.sent_count, message.failed_count) == (1, 2)
    gone.refresh_from_db()
    foreign.refresh_from_db()
    assert (gone.is_active, gone.deactivation_reason) == (False, "UNREGISTERED")
    assert (foreign.is_active, foreign.deactivation_reason) == (False, "SENDER_ID_MISMATCH")
    assert Device.objects.targetable().count() == 1


def test_an_invalid_argument_fails_the_delivery_without_retry_or_deactivation(sandbox, server, make_device):
    device = make_device("sandbox-invalid-1")

    message = send(server)

    delivery = message.deliveries.get()
    assert (delivery.status, delivery.error_code, delivery.attempts) == ("failed", "INVALID_ARGUMENT", 1)
    device.refresh_from_db()
    assert device.is_active
    message.refresh_from_db()
    assert message.status == "failed"


def test_the_message_api_breaks_failures_down_by_error_code(sandbox, server, make_device):
    make_device("sandbox-unregistered-1")
    make_device("sandbox-unregistered-2", user="u2")
    make_device("sandbox-invalid-1", user="u3")
    make_device("tok-ok", user="u4")

    message = send(server)

    body = server.get(f"/api/v1/messages/{message.pk}").json()
    assert body["errors"] == {"UNREGISTERED": 2, "INVALID_ARGUMENT": 1}
    assert body["counts"] == {
        "targeted": 4,
        "sent": 1,
        "validated": 0,
        "failed": 3,
        "pending": 0,
        "opened": 0,
    }
    assert body["status"] == "completed_with_failures"


def test_an_unavailable_fcm_is_retried_later_and_then_succeeds(sandbox, server, make_device, inbox):
    make_device("sandbox-unavailable-once-1")

    message = send(server)

    delivery = message.deliveries.get()
    assert (delivery.status, delivery.error_code, delivery.attempts) == ("retrying", "UNAVAILABLE", 1)
    assert delivery.next_attempt_at > timezone.now()
    message.refresh_from_db()
    assert message.status == "sending"

    make_due(message)
    recover_stalled()

    delivery.refresh_from_db()
    message.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert message.status == "completed"
    assert len(inbox()["sandbox-unavailable-once-1"]) == 1


def test_quota_exceeded_waits_as_long_as_retry_after_says(sandbox, server, make_device):
    make_device("sandbox-quota-1")  # the sandbox answers 429 with Retry-After: 1

    before = timezone.now()
    message = send(server)

    delivery = message.deliveries.get()
    assert (delivery.status, delivery.error_code) == ("retrying", "QUOTA_EXCEEDED")
    assert before + timedelta(seconds=1) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=2)


def test_retries_stop_after_the_last_attempt(sandbox, server, make_device, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 3
    make_device("sandbox-internal-1")

    message = send(server)
    for _ in range(5):
        make_due(message)
        recover_stalled()

    delivery = message.deliveries.get()
    assert (delivery.status, delivery.error_code, delivery.attempts) == ("failed", "INTERNAL", 3)
    message.refresh_from_db()
    assert message.status == "failed"


def test_no_retry_goes_past_the_messages_ttl(sandbox, server, make_device):
    make_device("sandbox-unavailable-once-1")

    message = send(server, ttl_seconds=0)

    delivery = message.deliveries.get()
    assert (delivery.status, delivery.error_code) == ("failed", "UNAVAILABLE")


def test_a_dry_run_validates_every_message_and_delivers_none(sandbox, server, make_device, inbox):
    make_device("tok-a")
    make_device("sandbox-invalid-1", user="u2")

    message = send(server, dry_run=True)

    message.refresh_from_db()
    assert inbox() == {}
    assert (message.sent_count, message.validated_count, message.failed_count) == (0, 1, 1)
    assert message.deliveries.get(status="failed").error_code == "INVALID_ARGUMENT"
    assert message.deliveries.filter(status="validated").count() == 1


def test_a_scheduled_message_waits_for_its_time(sandbox, server, make_device, inbox):
    make_device("tok-a")
    message = send(server, schedule_at=(timezone.now() + timedelta(hours=1)).isoformat())

    recover_stalled()
    assert inbox() == {}
    Message.objects.filter(pk=message.pk).update(schedule_at=timezone.now() - timedelta(minutes=1))
    recover_stalled()

    message.refresh_from_db()
    assert message.status == "completed"
    assert list(inbox()) == ["tok-a"]


def test_a_cancelled_scheduled_message_is_never_sent(sandbox, server, make_device, inbox):
    make_device("tok-a")
    message = send(server, schedule_at=(timezone.now() + timedelta(hours=1)).isoformat())

    server.post(f"/api/v1/messages/{message.pk}/cancel")
    Message.objects.filter(pk=message.pk).update(schedule_at=timezone.now() - timedelta(minutes=1))
    recover_stalled()

    assert inbox() == {}
    message.refresh_from_db()
    assert message.status == "cancelled"


def test_cancelling_a_message_with_retries_pending_fails_them_as_cancelled(sandbox, server, make_device):
    make_device("sandbox-quota-1")
    make_device("tok-a", user="u2")
    message = send(server)

    server.post(f"/api/v1/messages/{message.pk}/cancel")

    message.refresh_from_db()
    assert message.status == "cancelled"
    assert dict(message.deliveries.values_list("status", "error_code")) == {"sent": "", "failed": "CANCELLED"}


def test_a_tenant_without_credentials_fails_its_message_with_a_reason(
    transactional_db, immediate_tasks, server, make_device
):
    make_device("tok-a")

    message = send(server)

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.deliveries.get().error_code == "CONFIGURATION"
    assert message.error


def test_fan_out_in_small_chunks_sends_every_device_once(sandbox, server, make_device, inbox, settings):
    settings.FANOUT_CHUNK_SIZE = 3
    for i in range(10):
        make_device(f"tok-{i}", user=f"u{i}")

    message = send(server)

    message.refresh_from_db()
    assert (message.targeted_count, message.sent_count) == (10, 10)
    assert sorted(len(v) for v in inbox().values()) == [1] * 10
    assert Delivery.objects.filter(message=message).count() == 10


def test_sending_costs_the_same_number_of_queries_for_10_or_60_devices(
    sandbox, server, make_device, django_assert_max_num_queries, settings
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # One batch of results each (a crash-safety flush every few answers is a separate cost).
    settings.DELIVERY_RESULT_BATCH, settings.DELIVERY_RESULT_INTERVAL = 1000, 60

    def queries_to_send(n, prefix):
        for i in range(n):
            make_device(f"{prefix}-{i}", user=f"{prefix}-u{i}")
        with CaptureQueriesContext(connection) as ctx:
            send(server, audience={"kind": "filter", "platforms": ["android"]}, title=prefix)
        Device.objects.filter(token__startswith=prefix).update(is_active=False, deactivated_at=timezone.now())
        return len(ctx.captured_queries)

    small, large = queries_to_send(10, "small"), queries_to_send(60, "large")

    assert large <= small + 2, (small, large)
