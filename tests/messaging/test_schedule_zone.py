"""A scheduled message is shown in the zone it was written in: 09:00 Europe/Istanbul, not 06:00 UTC."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("immediate_tasks")]
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant
COMPOSE = "/admin/messaging/message/compose/"


def two_days_ahead():
    return (timezone.now() + timedelta(days=2)).date()


def test_the_composer_keeps_the_zone_a_schedule_was_written_in(editor, tenant):
    day = two_days_ahead()
    editor.post(
        COMPOSE,
        {
            "tenant": tenant.pk,
            "title": "Flash sale",
            "body": "Only today.",
            "data_only": "1",
            "priority": "5",
            "audience": "all",
            "when": "later",
            "schedule_tz": "Europe/Istanbul",
            "schedule_at": f"{day}T09:00",
            "ttl_value": "4",
            "ttl_unit": "604800",
            "_action": "confirm",
        },
    )

    message = Message.objects.get()
    assert message.schedule_tz == "Europe/Istanbul"
    assert message.schedule_at.astimezone(timezone.UTC).strftime("%H:%M") == "06:00"
    page = editor.get(f"/admin/messaging/message/{message.pk}/change/").content.decode()
    assert f"{day.day} {day:%b %Y}, 09:00 Europe/Istanbul" in page
    assert "06:00" not in page.split('id="hd-progress"')[1].split("</section>")[0]
    listing = editor.get("/admin/messaging/message/").content.decode()
    assert "09:00 Europe/Istanbul" in listing


def test_the_api_keeps_the_offset_a_schedule_was_written_with(server, editor):
    day = two_days_ahead()

    response = server.post(
        "/api/v1/messages",
        {"title": "Sale", "body": "Today only", "schedule_at": f"{day}T09:00:00+03:00"},
        format="json",
    )

    message = Message.objects.get(pk=response.json()["id"])
    assert message.schedule_tz == "+03:00"
    page = editor.get(f"/admin/messaging/message/{message.pk}/change/").content.decode()
    assert f"{day.day} {day:%b %Y}, 09:00 UTC+03:00" in page


def test_a_schedule_written_in_utc_says_utc(server, editor):
    day = two_days_ahead()

    response = server.post(
        "/api/v1/messages",
        {"title": "Sale", "body": "Today only", "schedule_at": f"{day}T09:00:00Z"},
        format="json",
    )

    message = Message.objects.get(pk=response.json()["id"])
    assert message.schedule_tz == ""
    assert "09:00 UTC" in editor.get(f"/admin/messaging/message/{message.pk}/change/").content.decode()
