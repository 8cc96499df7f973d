"""Posting the outbox: signatures, batches, retries with backoff, disabling, the attempt log."""

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhooks import services
from webhooks.models import Attempt, Batch, Endpoint, Event, EventType

pytestmark = pytest.mark.django_db


def queue(endpoint, count, *, event_type=EventType.DELIVERY_SENT, at=None):
    services.record_events(
        tenant_id=endpoint.tenant_id,
        event_type=event_type,
        at=at or timezone.now(),
        items=[{"delivery_id": i} for i in range(count)],
    )


def deliver(endpoint, now=None):
    return services.deliver_endpoint(endpoint_id=endpoint.pk, now=now)


def test_every_post_verifies_with_the_standard_webhooks_reference_implementation(receiver, make_endpoint):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 3)

    deliver(endpoint)

    [post] = receiver.requests
    payload = Webhook(endpoint.raw_secret).verify(post["body"], post["headers"])
    assert payload["type"] == "batch"
    assert [e["data"]["delivery_id"] for e in payload["data"]] == [0, 1, 2]
    assert all(e["type"] == "delivery.sent" and e["id"].startswith("evt_") for e in payload["data"])
    assert post["headers"]["webhook-id"] == Batch.objects.get().webhook_id
    assert post["headers"]["Content-Type"] == "application/json"


def test_a_post_signed_with_another_secret_does_not_verify(receiver, make_endpoint):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 1)

    deliver(endpoint)

    [post] = receiver.requests
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(post["body"], post["headers"])
    tampered = post["body"].replace(b"delivery.sent", b"delivery.fail")
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.raw_secret).verify(tampered, post["headers"])


def test_the_secret_is_encrypted_at_rest(make_endpoint):
    endpoint = make_endpoint("https://hooks.example.com/x")

    stored = Endpoint.objects.filter(pk=endpoint.pk).values_list("encrypted_secret", flat=True).get()
    assert endpoint.raw_secret.startswith("whsec_")
    assert endpoint.raw_secret.removeprefix("whsec_") not in stored
    assert endpoint.signing_secrets(now=timezone.now()) == [endpoint.raw_secret]


def test_after_a_rotation_posts_carry_both_signatures_until_the_grace_period_ends(receiver, make_endpoint):
    endpoint = make_endpoint(receiver.url)
    new_secret = services.rotate_secret(endpoint=endpoint)
    queue(endpoint, 1)

    deliver(endpoint)

    post = receiver.requests[-1]
    assert len(post["headers"]["webhook-signature"].split(" ")) == 2
    Webhook(endpoint.raw_secret).verify(post["body"], post["headers"])
    Webhook(new_secret).verify(post["body"], post["headers"])

    Endpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now() - timedelta(1))
    queue(endpoint, 1)
    deliver(endpoint)

    post = receiver.requests[-1]
    assert len(post["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(post["body"], post["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.raw_secret).verify(post["body"], post["headers"])


def test_a_storm_of_events_becomes_one_post_per_batch(receiver, make_endpoint, settings):
    settings.WEBHOOKS_BATCH_SIZE = 100
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 250)

    assert deliver(endpoint) == 3

    sizes = [len(json.loads(r["body"])["data"]) for r in receiver.requests]
    assert sizes == [100, 100, 50]
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 3
    assert [e["data"]["delivery_id"] for e in receiver.events()] == list(range(250))
    assert not Event.objects.filter(batch__isnull=True).exists()
    assert set(Batch.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_failed_post_is_logged_and_retried_after_a_backoff_with_the_same_webhook_id(
    receiver, make_endpoint
):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 2)
    receiver.answers = [503]
    t0 = timezone.now()

    deliver(endpoint, now=t0)

    endpoint.refresh_from_db()
    [attempt] = Attempt.objects.all()
    assert (attempt.ok, attempt.status_code, attempt.error) == (False, 503, "http_status")
    assert attempt.event_count == 2
    assert attempt.latency_ms >= 0
    assert endpoint.consecutive_failures == 1 and endpoint.failing_since == t0
    assert t0 + timedelta(seconds=2.5) <= endpoint.retry_at <= t0 + timedelta(seconds=5)

    deliver(endpoint, now=t0 + timedelta(seconds=2))  # still resting
    assert len(receiver.requests) == 1

    deliver(endpoint, now=endpoint.retry_at)

    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert json.loads(first["body"])["data"] == json.loads(second["body"])["data"]
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.failing_since, endpoint.retry_at) == (0, None, None)
    assert Batch.objects.get().status == "delivered"


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    for failures, ceiling in [(1, 5), (2, 10), (3, 20), (6, 160), (12, 7200), (40, 7200)]:
        delays = {services.backoff(failures).total_seconds() for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, delays)
        assert len(delays) > 1  # jittered


def test_an_endpoint_failing_for_a_day_is_disabled_with_the_reason(receiver, make_endpoint):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 1)
    receiver.answers = [500] * 1000
    at = timezone.now()

    while True:
        deliver(endpoint, now=at)
        endpoint.refresh_from_db()
        if not endpoint.is_enabled:
            break
        assert at - endpoint.failing_since < timedelta(hours=24)
        at = endpoint.retry_at

    assert at - endpoint.failing_since >= timedelta(hours=24)
    assert "Every attempt failed for 24 hours" in endpoint.disabled_reason
    assert "HTTP 500" in endpoint.disabled_reason
    # Exponential backoff: a day of retries is a few dozen attempts, not thousands.
    assert 15 <= Attempt.objects.count() <= 45
    posts = len(receiver.requests)
    deliver(endpoint, now=at + timedelta(hours=3))
    assert len(receiver.requests) == posts  # disabled: nothing more is posted
    # ...and nothing more is recorded for it.
    queue(endpoint, 5)
    assert Event.objects.filter(endpoint=endpoint).count() == 1


def test_an_endpoint_failing_n_times_in_a_row_is_disabled(receiver, make_endpoint, settings):
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 3
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 1)
    receiver.answers = [500, 502, 504]
    at = timezone.now()

    for _ in range(3):
        deliver(endpoint, now=at)
        endpoint.refresh_from_db()
        at = endpoint.retry_at or at

    assert not endpoint.is_enabled
    assert endpoint.disabled_reason == "3 attempts in a row failed (the last: HTTP 504)."


def test_enabling_a_disabled_endpoint_sends_what_waited(
    receiver, make_endpoint, webhook_tasks, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 1)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        disabled_at=timezone.now(), disabled_reason="x", consecutive_failures=9
    )
    endpoint.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        services.update_endpoint(endpoint=endpoint, enabled=True)

    endpoint.refresh_from_db()
    assert endpoint.is_enabled and endpoint.consecutive_failures == 0
    assert len(receiver.events()) == 1


def test_a_redirect_is_a_failure_and_is_never_followed(receiver, make_endpoint, local_webhooks):
    from tests.webhooks.conftest import Receiver

    internal = Receiver()
    try:
        receiver.redirect_to = internal.url
        endpoint = make_endpoint(receiver.url)
        queue(endpoint, 1)

        deliver(endpoint)

        attempt = Attempt.objects.get()
        assert (attempt.ok, attempt.status_code) == (False, 302)
        assert "redirect" in attempt.detail
        assert internal.requests == []
    finally:
        internal.stop()


def test_an_endpoint_now_resolving_to_a_private_address_is_refused_at_send_time(
    receiver, make_endpoint, settings
):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 1)
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = False

    deliver(endpoint)

    attempt = Attempt.objects.get()
    assert (attempt.ok, attempt.error, attempt.status_code) == (False, "unsafe_url", None)
    assert receiver.requests == []


def test_an_unreachable_endpoint_is_logged_with_its_error_class(make_endpoint, local_webhooks):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = make_endpoint(f"http://127.0.0.1:{port}/x")
    queue(endpoint, 1)

    deliver(endpoint)

    attempt = Attempt.objects.get()
    assert (attempt.ok, attempt.error, attempt.status_code) == (False, "connect", None)


def test_the_response_body_is_never_stored_or_logged(receiver, make_endpoint, caplog):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 1)
    receiver.answers = [500]

    with caplog.at_level(logging.DEBUG):
        deliver(endpoint)

    attempt = Attempt.objects.get()
    stored = json.dumps(list(Attempt.objects.values()), default=str)
    assert "secret-internal-response-body" not in stored
    assert "secret-internal-response-body" not in caplog.text
    assert attempt.detail == "HTTP 500"


def test_two_senders_never_post_the_same_batch(receiver, make_endpoint):
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 5)
    now = timezone.now()

    first = services._claim_batch(endpoint, now)
    second = services._claim_batch(endpoint, now)

    assert first is not None and second is None
    assert Event.objects.filter(batch=first).count() == 5


def test_the_beat_resumes_endpoints_with_due_work_only(receiver, make_endpoint, webhook_tasks):
    from messaging.signals import beat

    due = make_endpoint(receiver.url, event_types=["delivery.sent"])
    resting = make_endpoint(receiver.url, event_types=["delivery.sent"])
    make_endpoint(receiver.url, event_types=["message.completed"])  # nothing for it
    queue(due, 1)  # its kick is lost: the test's transaction never commits
    Endpoint.objects.filter(pk=resting.pk).update(retry_at=timezone.now() + timedelta(minutes=5))

    beat.send(sender=None, now=timezone.now())  # what herald_beat does on every pass

    assert len(receiver.requests) == 1
    assert Batch.objects.get().endpoint_id == due.pk
    assert Event.objects.filter(endpoint=resting, batch=None).count() == 1


def test_prune_deletes_only_old_delivered_batches_attempts_and_orphans(receiver, make_endpoint, settings):
    settings.WEBHOOKS_KEEP_DAYS = 14
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 3)
    deliver(endpoint)
    queue(endpoint, 2)  # waiting: never pruned
    old = timezone.now() - timedelta(days=15)
    Batch.objects.update(delivered_at=old)
    Attempt.objects.update(attempted_at=old)

    Event.objects.create(endpoint_id=endpoint.pk + 99, type="delivery.sent", data={})  # of a deleted endpoint

    removed = services.prune(chunk=1)

    assert removed == {"batches": 1, "attempts": 1, "orphans": 1}
    assert Event.objects.count() == 2 and not Event.objects.exclude(batch=None).exists()


@pytest.mark.django_db(transaction=True)
def test_recording_for_an_endpoint_deleted_meanwhile_never_fails_the_caller(make_endpoint):
    from django.db import connection, transaction

    endpoint = make_endpoint("https://hooks.example.com/x")
    assert services.is_subscribed(endpoint.tenant_id, "delivery.sent")  # the map is warm
    with connection.cursor() as cursor:  # another process deletes it; this one's map is stale
        cursor.execute("DELETE FROM webhooks_endpoint WHERE id = %s", [endpoint.pk])

    with transaction.atomic():
        written = services.record_events(
            tenant_id=endpoint.tenant_id, event_type="delivery.sent", items=[{"n": 1}], at=timezone.now()
        )

    assert written == 1  # committed; never sent, and pruned
    assert services.prune()["orphans"] == 1


def test_the_verification_example_in_the_docs_accepts_a_real_post_and_refuses_a_forged_one(
    receiver, make_endpoint
):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    code = doc.split("<!-- verify-example -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)  # noqa: S102
    endpoint = make_endpoint(receiver.url)
    queue(endpoint, 2)
    deliver(endpoint)
    [post] = receiver.requests

    assert namespace["verify"](endpoint.raw_secret, post["headers"], post["body"]) is True
    assert namespace["verify"](endpoint.raw_secret, post["headers"], post["body"] + b" ") is False
    assert namespace["verify"](services.new_secret(), post["headers"], post["body"]) is False
