"""Retention: rows older than the cut-off go, in batches, and nothing else does."""

from datetime import timedelta

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.models import AppUser, Device, Event, TokenRotation
from messaging.models import Delivery
from messaging.retention import apply_retention
from tenants.models import Tenant
from tests.staff import make_delivery, make_device, make_message

pytest_plugins = ["tests.staff_fixtures"]

NOW = timezone.now().replace(microsecond=0)


def event(tenant, name, *, age, user="u1"):
    app_user, _ = AppUser.objects.get_or_create(tenant=tenant, app_user_id=user)
    return Event.objects.create(
        tenant=tenant,
        user=app_user,
        name=name,
        occurred_at=NOW,
        received_at=NOW - age,
        session_id="s",
        fingerprint=f"{tenant.pk}-{name}",
    )


def deletes(queries) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE"))


def test_it_deletes_exactly_the_events_older_than_the_cut_off_in_batches(tenant, settings):
    settings.RETENTION_EVENTS_DAYS, settings.RETENTION_BATCH_SIZE = 180, 3
    old = {event(tenant, f"old-{i}", age=timedelta(days=181 + i)).pk for i in range(7)}
    just_old = event(tenant, "just-old", age=timedelta(days=180, seconds=1))
    at_cutoff = event(tenant, "at-cutoff", age=timedelta(days=180))
    young = event(tenant, "young", age=timedelta(days=179))
    other = Tenant.objects.create(name="Other", tenant_id="other")
    theirs = event(other, "theirs", age=timedelta(days=400))

    with CaptureQueriesContext(connection) as queries:
        report = apply_retention(tenant=tenant, now=NOW)

    assert (report["events"], report["batches"]) == (8, 3)  # 8 rows, 3 + 3 + 2
    assert deletes(queries) == 3
    remaining = set(Event.objects.values_list("pk", flat=True))
    assert remaining == {at_cutoff.pk, young.pk, theirs.pk}
    assert not remaining & (old | {just_old.pk})


def test_it_deletes_token_history_past_its_cut_off_and_keeps_the_devices(tenant, settings):
    settings.RETENTION_TOKEN_HISTORY_DAYS, settings.RETENTION_BATCH_SIZE = 30, 2
    device = make_device(tenant, "tok")
    for days in (31, 32, 33, 29):
        TokenRotation.objects.create(
            device=device,
            old_token=f"t{days}",
            old_token_hash=f"h{days}",
            new_token="tok",
            rotated_at=NOW - timedelta(days=days),
        )

    report = apply_retention(tenant=tenant, now=NOW)

    assert (report["token_rotations"], report["batches"]) == (3, 2)
    assert list(TokenRotation.objects.values_list("old_token", flat=True)) == ["t29"]
    assert Device.objects.filter(pk=device.pk).exists()


def test_it_deletes_old_deliveries_of_finished_messages_and_keeps_every_total(
    tenant, settings, server_key, client
):
    settings.RETENTION_DELIVERIES_DAYS, settings.RETENTION_BATCH_SIZE = 90, 2
    devices = [make_device(tenant, f"tok-{i}", user=f"u{i}") for i in range(5)]
    old = make_message(
        tenant,
        status="completed_with_failures",
        completed_at=NOW - timedelta(days=91),
        targeted_count=5,
        sent_count=3,
        failed_count=2,
        opened_count=1,
    )
    for i, device in enumerate(devices):
        failed = i >= 3
        make_delivery(
            old,
            device,
            status="failed" if failed else "sent",
            error_code="UNREGISTERED" if i == 3 else "INVALID_ARGUMENT" if i == 4 else "",
            opened_at=NOW - timedelta(days=92) if i == 0 else None,
        )
    recent = make_message(tenant, completed_at=NOW - timedelta(days=89), targeted_count=1, sent_count=1)
    make_delivery(recent, devices[0])
    stuck = make_message(tenant, status="sending", started_at=NOW - timedelta(days=200), targeted_count=1)
    make_delivery(stuck, devices[1], status="pending")
    before = client.get(f"/api/v1/messages/{old.pk}", HTTP_X_SERVER_KEY=server_key).json()

    with CaptureQueriesContext(connection) as queries:
        report = apply_retention(tenant=tenant, now=NOW)

    assert (report["deliveries"], report["messages_pruned"], report["batches"]) == (5, 1, 3)
    assert deletes(queries) == 3
    assert not Delivery.objects.filter(message=old).exists()
    assert Delivery.objects.filter(message__in=[recent, stuck]).count() == 2
    after = client.get(f"/api/v1/messages/{old.pk}", HTTP_X_SERVER_KEY=server_key).json()
    assert (
        after["counts"]
        == before["counts"]
        == {"targeted": 5, "sent": 3, "validated": 0, "failed": 2, "pending": 0, "opened": 1}
    )
    assert after["errors"] == before["errors"] == {"UNREGISTERED": 1, "INVALID_ARGUMENT": 1}
    assert after["open_rate"] == before["open_rate"]


def test_a_tenant_keeps_rows_as_long_as_it_says_and_zero_means_forever(tenant, settings):
    settings.RETENTION_EVENTS_DAYS = 180
    tenant.retention_events_days = 10
    tenant.save()
    event(tenant, "eleven-days", age=timedelta(days=11))
    event(tenant, "nine-days", age=timedelta(days=9))
    other = Tenant.objects.create(name="Other", tenant_id="other", retention_events_days=0)
    event(other, "ancient", age=timedelta(days=5000))

    apply_retention(tenant=tenant, now=NOW)
    apply_retention(tenant=other, now=NOW)

    assert sorted(Event.objects.values_list("name", flat=True)) == ["ancient", "nine-days"]


def test_it_records_what_it_removed_on_the_tenant_and_shows_it_on_the_tenant_page(
    tenant, superuser, settings
):
    settings.RETENTION_EVENTS_DAYS = 180
    event(tenant, "old", age=timedelta(days=200))

    apply_retention(tenant=tenant, now=NOW)

    tenant.refresh_from_db()
    assert tenant.retention_ran_at == NOW
    assert tenant.retention_report["events"] == 1
    page = superuser.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert "deleted 1 events" in page
    assert "events 180 days" in page


def test_herald_beat_queues_retention_once_a_day(tenant, settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    settings.RETENTION_EVENTS_DAYS = 180
    event(tenant, "old", age=timedelta(days=200))

    call_command("herald_beat", "--once")

    assert not Event.objects.exists()
    tenant.refresh_from_db()
    assert tenant.retention_report["events"] == 1
