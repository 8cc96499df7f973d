"""The limits that protect users: the tenant's daily frequency cap and quiet hours, for
campaign sends and staff marketing messages alike; transactional pushes are exempt."""

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from rest_framework.test import APIClient

from campaigns import services
from campaigns.models import CampaignRecipient
from messaging.models import Delivery, Message
from messaging.services import fan_out
from tests.campaigns.conftest import make_campaign, make_user

pytest_plugins = ["tests.staff_fixtures"]  # viewer

EVENING = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)  # 23:00 in Istanbul (UTC+3)
ISTANBUL_MORNING = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)  # 08:00 in Istanbul
ISTANBUL_NOON = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 12:00 in Istanbul


@pytest.fixture
def server(server_key):
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=server_key)
    return client


@pytest.fixture
def quiet_nights(tenant):
    tenant.quiet_hours_start, tenant.quiet_hours_end = time(22, 0), time(8, 0)
    tenant.save()
    return tenant


def api_message(server, **body):
    response = server.post(
        "/api/v1/messages",
        {
            "title": "Sale",
            "body": "Today only",
            "audience": {"kind": "users", "app_user_ids": ["ayse"]},
            **body,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    message = Message.objects.get(pk=response.json()["id"])
    fan_out(message_id=message.pk)
    message.refresh_from_db()
    return message


def test_a_staff_marketing_message_respects_the_cap_while_transactional_pushes_are_exempt(
    tenant, server, no_sending
):
    tenant.marketing_daily_cap = 1
    tenant.save()
    make_user(tenant, "ayse", devices=2)

    first = api_message(server)
    second = api_message(server)
    transactional = api_message(server, transactional=True)
    response = server.post(
        "/developer/push", {"app_user_id": "ayse", "title": "Receipt", "body": "Paid"}, format="json"
    )
    assert response.status_code == 201, response.content
    receipt = Message.objects.get(source="developer_push")
    fan_out(message_id=receipt.pk)

    assert first.targeted_count == 2 and first.skipped == {}
    assert second.targeted_count == 0 and second.skipped == {"frequency_cap": 2}
    assert transactional.transactional and transactional.targeted_count == 2
    assert receipt.transactional and Delivery.objects.filter(message=receipt).count() == 2


def test_the_cap_counts_campaign_sends_and_staff_messages_together(tenant, server, no_sending):
    tenant.marketing_daily_cap = 2
    tenant.save()
    user = make_user(tenant, "ayse", timezone="Europe/Istanbul")
    campaign = make_campaign(tenant, kind="scheduled", trigger_event="")
    # All three within one day in the user's zone: on the real clock, an hour after 20:00 UTC
    # was the next day in Istanbul, where the cap starts over.
    now = ISTANBUL_NOON
    with time_machine.travel(now, tick=False):
        assert services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence="a", now=now).sent == 1
        assert api_message(server).targeted_count == 1
    result = services.dispatch(
        campaign=campaign, user_ids=[user.pk], occurrence="b", now=now + timedelta(hours=1)
    )
    assert result.sent == 0 and result.skipped == {"frequency_cap": 1}


def test_a_staff_message_in_the_quiet_hours_waits_until_they_end_in_the_users_zone(
    quiet_nights, server, no_sending
):
    make_user(quiet_nights, "ayse", timezone="Europe/Istanbul")
    with time_machine.travel(EVENING, tick=False):
        message = api_message(server)
    delivery = Delivery.objects.get(message=message)
    assert delivery.next_attempt_at == ISTANBUL_MORNING
    assert message.skipped == {"quiet_hours_deferred": 1}


def test_a_campaign_send_in_the_quiet_hours_is_deferred_then_sent_when_they_end(quiet_nights, no_sending):
    campaign = make_campaign(quiet_nights, kind="scheduled", trigger_event="")
    night_owl = make_user(quiet_nights, "ayse", timezone="Europe/Istanbul")
    awake = make_user(quiet_nights, "sam", timezone="America/New_York")  # 15:00 there

    result = services.dispatch(
        campaign=campaign, user_ids=[night_owl.pk, awake.pk], occurrence="d", now=EVENING
    )
    assert (result.sent, result.deferred) == (1, 1)
    deferred = CampaignRecipient.objects.get(user=night_owl)
    assert (deferred.state, deferred.due_at) == ("deferred", ISTANBUL_MORNING)

    assert services.send_deferred(now=ISTANBUL_MORNING - timedelta(minutes=1)) == 0
    assert services.send_deferred(now=ISTANBUL_MORNING) == 1
    deferred.refresh_from_db()
    assert deferred.state == "sent" and deferred.message.source == "campaign"
    assert services.send_deferred(now=ISTANBUL_MORNING) == 0  # a second beat finds nothing


def test_a_campaign_that_says_drop_drops_sends_in_the_quiet_hours(quiet_nights, no_sending):
    campaign = make_campaign(quiet_nights, kind="scheduled", trigger_event="", quiet_hours_action="drop")
    user = make_user(quiet_nights, "ayse", timezone="Europe/Istanbul")
    result = services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence="d", now=EVENING)
    assert result.sent == 0 and result.skipped == {"quiet_hours": 1}


def test_users_without_a_zone_keep_the_tenants_quiet_hours(quiet_nights, no_sending):
    quiet_nights.time_zone = "Europe/Istanbul"
    quiet_nights.save()
    campaign = make_campaign(quiet_nights, kind="scheduled", trigger_event="")
    user = make_user(quiet_nights, "ayse", timezone="")
    result = services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence="d", now=EVENING)
    assert result.deferred == 1


def test_a_deferred_send_of_a_campaign_paused_meanwhile_is_skipped(quiet_nights, no_sending):
    campaign = make_campaign(quiet_nights, kind="scheduled", trigger_event="")
    user = make_user(quiet_nights, "ayse", timezone="Europe/Istanbul")
    services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence="d", now=EVENING)
    services.pause(campaign, now=EVENING + timedelta(hours=1))
    services.resume(campaign, now=ISTANBUL_MORNING + timedelta(hours=1))  # no burst of the night's sends
    assert services.send_deferred(now=ISTANBUL_MORNING + timedelta(hours=1)) == 0
    assert CampaignRecipient.objects.get(user=user).reason == "paused"


def test_the_message_page_says_how_many_devices_the_cap_and_the_quiet_hours_held_back(
    quiet_nights, server, viewer, no_sending
):
    quiet_nights.marketing_daily_cap = 1
    quiet_nights.save()
    make_user(quiet_nights, "ayse", timezone="Europe/Istanbul", devices=2)
    with time_machine.travel(EVENING, tick=False):
        api_message(server)
        capped = api_message(server)
    first = Message.objects.exclude(pk=capped.pk).get()

    held = viewer.get(f"/admin/messaging/message/{first.pk}/change/").content.decode()
    over = viewer.get(f"/admin/messaging/message/{capped.pk}/change/").content.decode()

    assert "2 devices sent when the quiet hours ended" in held
    assert "2 devices not sent: their users had their marketing pushes for the day" in over


def test_quiet_hours_need_both_ends_and_two_different_times(tenant):
    from django.core.exceptions import ValidationError

    tenant.quiet_hours_start = time(22, 0)
    with pytest.raises(ValidationError, match="both ends"):
        tenant.full_clean()
    tenant.quiet_hours_end = time(22, 0)
    with pytest.raises(ValidationError, match="another time"):
        tenant.full_clean()
    tenant.quiet_hours_end = time(8, 0)
    tenant.full_clean()
