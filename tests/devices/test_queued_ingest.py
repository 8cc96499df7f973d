"""Queued ingestion (EVENTS_INGEST=queue): POST /events appends to a Redis stream and
`manage.py herald_ingest` writes it (devices/ingest.py)."""

import io
import signal
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from api import throttling
from devices import ingest, services, validation
from devices.models import Device, Event
from devices.signals import event_recorded
from tenants.models import ApiKey, Tenant
from tests.devices.conftest import EVENT

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_client(settings):
    client = throttling.redis_client()
    client.delete(ingest.STREAM, ingest.DEAD_LETTERS, ingest.PENDING)
    yield client
    client.delete(ingest.STREAM, ingest.DEAD_LETTERS, ingest.PENDING)


@pytest.fixture
def queue_mode(settings, redis_client):
    settings.EVENTS_INGEST = "queue"
    return redis_client


def write_queued_events(*args) -> str:
    out = io.StringIO()
    call_command("herald_ingest", "--drain", *args, stdout=out)
    return out.getvalue()


def queued(client) -> int:
    return client.xlen(ingest.STREAM)


def test_a_queued_event_answers_the_direct_fingerprint_and_is_stored_when_the_writer_drains(
    queue_mode, api, event_body, settings
):
    fingerprint = api("/events", event_body).json()["fingerprint"]
    again = api("/events", event_body).json()["fingerprint"]  # the plain path, the key now remembered

    assert fingerprint == again
    assert Event.objects.count() == 0
    assert queued(queue_mode) == 2
    assert write_queued_events() == "1 events written\n"
    event = Event.objects.get()
    assert event.fingerprint == fingerprint
    assert Device.objects.get().token == "fcm-token-aaa"
    assert queued(queue_mode) == 0
    assert queue_mode.hlen(ingest.PENDING) == 0

    settings.EVENTS_INGEST = "direct"
    assert api("/events", event_body).json()["fingerprint"] == fingerprint
    assert Event.objects.count() == 1


def test_a_queued_event_is_stored_with_the_time_it_was_accepted(queue_mode, api, event_body, frozen_clock):
    accepted_at = timezone.now()
    api("/events", event_body)
    frozen_clock.shift(timedelta(seconds=40))

    write_queued_events()

    assert Event.objects.get().received_at == accepted_at == Device.objects.get().last_seen_at


def test_nothing_is_queued_behind_a_400_a_401_or_a_429(
    queue_mode, api, event_body, settings, rate_limit_clock
):
    settings.RATE_LIMIT_PER_KEY = "2/min"  # the 400 counts against it, then one 200
    assert api("/events", {**event_body, "platform": "symbian"}).status_code == 400
    assert api("/events", event_body, api_key="wrong").status_code == 401
    assert api("/events", event_body).status_code == 200
    assert api("/events", {**event_body, "event_name": "second"}).status_code == 429
    assert api("/events", {**event_body, "event_name": "third"}).status_code == 429

    assert queued(queue_mode) == 1
    write_queued_events()
    assert list(Event.objects.values_list("name", flat=True)) == ["app_opened"]


def test_without_redis_a_queued_event_is_written_directly(queue_mode, api, event_body, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    first = api("/events", event_body)  # the DRF view (the key is not remembered yet)
    second = api("/events", {**event_body, "event_name": "second"})  # the plain path

    assert (first.status_code, second.status_code) == (200, 200)
    assert Event.objects.count() == 2
    assert first.json()["fingerprint"] == Event.objects.get(name="app_opened").fingerprint


def test_a_full_stream_takes_no_more_and_the_event_is_written_directly(queue_mode, api, event_body, settings):
    from tests.scrape import TOKEN, scrape, value

    settings.METRICS_TOKEN = TOKEN
    settings.EVENTS_INGEST_MAX_QUEUED = 2
    before = value(scrape(), "herald_events_queue_full_total")
    answers = [api("/events", {**event_body, "event_name": f"e{i}"}) for i in range(4)]  # DRF, then plain

    assert [answer.status_code for answer in answers] == [200] * 4
    assert queued(queue_mode) == 2
    assert sorted(Event.objects.values_list("name", flat=True)) == ["e2", "e3"]
    assert value(scrape(), "herald_events_queue_full_total") == before + 2
    write_queued_events()
    stored = dict(Event.objects.values_list("name", "fingerprint"))
    assert stored == {f"e{i}": answers[i].json()["fingerprint"] for i in range(4)}


def test_a_batch_delivered_again_after_a_crash_stores_each_event_once_and_keeps_the_newer_device_state(
    queue_mode, api, event_body, settings, monkeypatch
):
    api("/events", {**event_body, "push_permission_granted": True})
    # The writer commits, then dies before acknowledging.
    with monkeypatch.context() as patch:
        patch.setattr(ingest.Consumer, "_acknowledge", lambda self, entries: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            write_queued_events()
    assert Event.objects.count() == 1
    assert queue_mode.xpending(ingest.STREAM, ingest.GROUP)["pending"] == 1
    # A newer event of the device is written meanwhile (directly).
    settings.EVENTS_INGEST = "direct"
    api("/events", {**event_body, "push_permission_granted": False, "session_id": "sess-2"})
    settings.EVENTS_INGEST = "queue"

    assert write_queued_events() == "0 events written\n"  # the next writer takes the batch over

    device = Device.objects.get()
    assert (device.push_permission, device.last_session_id) == (False, "sess-2")
    assert Event.objects.count() == 2
    assert queued(queue_mode) == 0
    assert queue_mode.xpending(ingest.STREAM, ingest.GROUP)["pending"] == 0


def test_a_refresh_right_after_a_queued_first_event_answers_200_and_leaves_one_device(
    queue_mode, api, event_body
):
    api("/events", event_body)

    response = api("/devices/refresh-token", {"old_token": "fcm-token-aaa", "new_token": "fcm-token-bbb"})

    assert response.status_code == 200, response.content
    device = Device.objects.get()
    assert device.token == "fcm-token-bbb"
    assert Event.objects.get().device == device
    assert queued(queue_mode) == 0
    assert queue_mode.hlen(ingest.PENDING) == 0


def test_a_refresh_behind_a_long_backlog_writes_only_its_share_of_it_and_goes_on(
    queue_mode, api, event_body, monkeypatch
):
    monkeypatch.setattr(ingest, "REFRESH_BATCH", 1)
    monkeypatch.setattr(ingest, "REFRESH_MAX_BATCHES", 2)
    for n in range(3):  # no writer running: other devices' events pile up
        api("/events", {**event_body, "device_token": f"fcm-token-other-{n}"})
    api("/events", event_body)
    tenant = Tenant.objects.get()

    # Two batches of the backlog written, not all of it: its token's first event is still queued,
    # so there is no device to rotate yet.
    with pytest.raises(services.DeviceNotFound):
        services.refresh_token(tenant=tenant, old_token="fcm-token-aaa", new_token="fcm-token-bbb")

    assert Event.objects.count() == 2
    assert queued(queue_mode) == 2


def test_a_queued_old_token_event_is_not_applied_after_the_rotation(queue_mode, api, event_body):
    api("/events", event_body)
    write_queued_events()
    api("/events", {**event_body, "event_name": "late"})  # still queued at the refresh

    assert (
        api(
            "/devices/refresh-token", {"old_token": "fcm-token-aaa", "new_token": "fcm-token-bbb"}
        ).status_code
        == 200
    )
    write_queued_events()

    assert list(Device.objects.values_list("token", flat=True)) == ["fcm-token-bbb"]
    assert Event.objects.count() == 2


def test_a_malformed_entry_goes_to_the_dead_letter_stream_and_the_rest_are_applied(
    queue_mode, api, event_body
):
    api("/events", event_body)
    queue_mode.xadd(ingest.STREAM, {"t": "1", "d": "{not json"})
    queue_mode.xadd(ingest.STREAM, {"t": "1", "d": '{"tenant": 1}'})
    api("/events", {**event_body, "event_name": "second"})

    assert write_queued_events() == "2 events written\n"

    assert Event.objects.count() == 2
    dead = queue_mode.xrange(ingest.DEAD_LETTERS)
    assert [fields[b"reason"] for _, fields in dead] == [b"not JSON", b"token_hash: missing or not a str"]
    assert queued(queue_mode) == 0


def test_an_event_of_a_deleted_tenant_goes_to_the_dead_letter_stream(queue_mode, api, event_body, tenant):
    other = Tenant.objects.create(name="Gone", tenant_id="gone")
    other_key = ApiKey.generate(tenant=other, name="app", kind=ApiKey.Kind.APP)[1]
    api("/events", event_body, tenant_id="gone", api_key=other_key)
    api("/events", event_body)
    other.delete()

    assert write_queued_events() == "1 events written\n"

    assert Event.objects.get().tenant == tenant
    assert [fields[b"reason"] for _, fields in queue_mode.xrange(ingest.DEAD_LETTERS)] == [b"unknown tenant"]


def test_the_writer_fires_event_recorded_after_it_stores_the_event(queue_mode, api, event_body, tenant):
    heard = []

    def receiver(sender, *, tenant_id, name, **kwargs):
        heard.append((tenant_id, name, Event.objects.filter(name=name).exists()))

    event_recorded.connect(receiver)
    try:
        api("/events", event_body)
        assert heard == []
        write_queued_events()
        write_queued_events()  # nothing more: fired once
    finally:
        event_recorded.disconnect(receiver)
    assert heard == [(tenant.pk, "app_opened", True)]


def test_each_tenant_s_queued_event_lands_in_its_own_tenant(queue_mode, api, event_body, tenant):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    other_key = ApiKey.generate(tenant=other, name="app", kind=ApiKey.Kind.APP)[1]

    mine = api("/events", event_body).json()["fingerprint"]
    theirs = api("/events", event_body, tenant_id="other", api_key=other_key).json()["fingerprint"]
    write_queued_events()

    assert mine != theirs
    assert Event.objects.get(fingerprint=mine).tenant == tenant
    assert Event.objects.get(fingerprint=theirs).tenant == other
    assert Device.objects.filter(tenant=other).count() == Device.objects.filter(tenant=tenant).count() == 1


def test_healthz_is_degraded_when_the_oldest_queued_event_is_old(queue_mode, client, db):
    queue_mode.xadd(ingest.STREAM, {"t": "1", "d": "{}"}, id="1000-0")  # queued in 1970

    body = client.get("/healthz").json()

    assert body["status"] == "degraded"
    assert body["checks"]["ingest"]["ok"] is False


def test_healthz_reports_the_backlog_in_queue_mode(queue_mode, api, event_body, client):
    api("/events", event_body)

    body = client.get("/healthz").json()

    assert body["checks"]["ingest"]["ok"] is True
    assert body["checks"]["ingest"]["queued"] == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_writers_draining_one_stream_at_once_store_each_event_once(queue_mode, tenant, app_key):
    client = APIClient()
    for n in range(60):
        body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key, "event_name": f"e{n % 7}"}
        body["device_token"] = f"token-{n % 5}"
        body["session_id"] = f"s{n}"
        assert client.post("/events", body, format="json").status_code == 200
    barrier = threading.Barrier(2)

    def writer():
        try:
            barrier.wait(timeout=10)
            write_queued_events("--batch", "7")
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert Event.objects.count() == 60
    assert Device.objects.count() == 5
    assert queued(queue_mode) == 0
    # the last event of each token decided its device's session (stream order)
    assert set(Device.objects.values_list("last_session_id", flat=True)) == {f"s{n}" for n in range(55, 60)}


@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_writer_finish_its_batch_and_exit(queue_mode, tenant, app_key):
    client = APIClient()
    for name in ("first", "second"):
        body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key, "event_name": name}
        assert client.post("/events", body, format="json").status_code == 200

    def terminate(sender, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # arrives while the first batch is being finished

    event_recorded.connect(terminate)
    try:
        call_command("herald_ingest", "--batch", "1")  # long-running: returns only when stopped
    finally:
        event_recorded.disconnect(terminate)

    assert list(Event.objects.values_list("name", flat=True)) == ["first"]
    assert queued(queue_mode) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.postgres
def test_a_document_the_database_refuses_goes_to_the_dead_letter_stream_and_its_batch_is_written(
    queue_mode, api, event_body, tenant
):
    api("/events", event_body)
    refused = ingest.prepare(
        tenant=tenant,
        event=services.EventInput(**{**validation.event_input(event_body), "event_name": "x" * 300}),
    )
    queue_mode.xadd(
        ingest.STREAM, dict(zip(refused.append.fields[::2], refused.append.fields[1::2], strict=True))
    )
    api("/events", {**event_body, "event_name": "second"})

    assert write_queued_events() == "2 events written\n"

    assert sorted(Event.objects.values_list("name", flat=True)) == ["app_opened", "second"]
    assert [fields[b"reason"] for _, fields in queue_mode.xrange(ingest.DEAD_LETTERS)] == [
        b"refused by the database (DataError)"
    ]


def test_without_redis_a_refresh_in_queue_mode_goes_on_directly(queue_mode, api, event_body, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    api("/events", event_body)
    api("/events", {**event_body, "event_name": "second"})  # the key is remembered: the plain path

    response = api("/devices/refresh-token", {"old_token": "fcm-token-aaa", "new_token": "fcm-token-bbb"})

    assert response.status_code == 200
    assert Device.objects.get().token == "fcm-token-bbb"
