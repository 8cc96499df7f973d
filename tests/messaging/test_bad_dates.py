"""Dates out of range: refused before anything is written, and survived when an old row has one."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from messaging import services
from messaging.models import Message
from tests.staff import signed_in, staff_user

pytestmark = pytest.mark.usefixtures("immediate_tasks")

OUT_OF_RANGE = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-11-23T10:00:00+23:59"]


def _soon(**delta) -> str:
    return (timezone.now() + timedelta(**delta)).isoformat()


@pytest.mark.parametrize("when", [*OUT_OF_RANGE, "far ahead", "long past"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/messages", {"title": "Sale", "body": "Today"}),
        ("/developer/push", {"app_user_id": "user_1", "title": "Sale", "body": "Today"}),
    ],
)
def test_a_schedule_at_out_of_range_is_a_400_naming_it_and_stores_nothing(
    server, make_device, path, body, when
):
    make_device("phone")
    when = {"far ahead": _soon(days=367), "long past": _soon(days=-2)}.get(when, when)

    response = server.post(path, {**body, "schedule_at": when}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["field"] == "schedule_at"
    assert not Message.objects.exists()


@pytest.mark.parametrize("when", [{"days": 365}, {"hours": -23}])
def test_a_schedule_at_from_a_day_ago_to_a_year_ahead_is_accepted(server, when):
    body = {"title": "Sale", "body": "Today", "schedule_at": _soon(**when)}

    response = server.post("/api/v1/messages", body, format="json")

    assert response.status_code == 202, response.content


# --- A row stored before dates were bounded ---------------------------------------------

# What the database holds for 9999-12-31T23:59:59-01:00 and 0001-01-01T00:00:00+01:00: one
# past year 9999, one before year 1, neither a Python datetime.
STORED = {
    "sqlite": {"after 9999": "10000-01-01 00:59:59", "before 1": "0000-12-31 23:00:00"},
    "postgresql": {"after 9999": "10000-01-01 00:59:59+00", "before 1": "0001-12-31 23:00:00+00 BC"},
}


@pytest.fixture(params=["after 9999", "before 1"])
def poisoned(request, tenant):
    message = Message.objects.create(
        tenant=tenant,
        title="Poison",
        body="x",
        status=Message.Status.SCHEDULED,
        schedule_at=timezone.now() + timedelta(days=1),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Message._meta.db_table} SET schedule_at = %s WHERE id = %s",  # noqa: S608
            [STORED[connection.vendor][request.param], message.pk],
        )
    return message


def test_the_message_api_lists_reads_and_cancels_a_message_with_an_unreadable_date(server, poisoned):
    listed = server.get("/api/v1/messages")
    read = server.get(f"/api/v1/messages/{poisoned.pk}")
    cancelled = server.post(f"/api/v1/messages/{poisoned.pk}/cancel")

    assert listed.status_code == 200 and listed.json()["results"][0]["schedule_at"] is None
    assert read.status_code == 200 and read.json()["title"] == "Poison"
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_the_admin_lists_shows_and_deletes_a_message_with_an_unreadable_date(tenant, poisoned):
    admin = signed_in(staff_user("root", superuser=True))

    assert admin.get("/admin/messaging/message/").status_code == 200
    assert admin.get(f"/admin/messaging/message/{poisoned.pk}/change/").status_code == 200
    assert admin.get("/admin/").status_code == 200  # the dashboard lists recent messages
    assert admin.get(f"/admin/messaging/message/{poisoned.pk}/delete/").status_code == 200
    response = admin.post(f"/admin/messaging/message/{poisoned.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Message.objects.filter(pk=poisoned.pk).exists()


def test_herald_beat_stops_a_message_with_an_unreadable_schedule_instead_of_retrying_it(poisoned):
    services.recover_stalled()
    services.fan_out(message_id=poisoned.pk)  # what a task queued for it earlier would run

    poisoned.refresh_from_db()
    assert poisoned.status == Message.Status.CANCELLED
    assert "schedule_at" in poisoned.error
    assert poisoned.deliveries.count() == 0
    assert "scheduled" not in services.recover_stalled()
