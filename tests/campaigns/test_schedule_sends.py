# ruff: noqa: F811  (the sandbox fixtures are imported here, then named as test arguments)
"""Scheduled campaigns end to end: herald_beat's passes plan and claim the waves, the real
dispatch makes the Messages, and the FCM sandbox receives them — across daylight-saving
changes in two zones, with the audience read when each wave is due."""

import threading
from datetime import date, time

import pytest
from django.db import connection, connections

from campaigns import scheduler
from campaigns.models import Campaign, CampaignRecipient, CampaignRun
from messaging.models import Message, MessageRecipient
from tests.campaigns.scheduling import beat_at, make_campaign, make_user, reached, utc
from tests.messaging.conftest import immediate_tasks, inbox, sandbox, sandbox_server  # noqa: F401

SUNDAY = 6


def drive(campaign: Campaign, *, start, until, most: int = 200) -> None:
    """Run herald_beat's campaign pass at `start`, then at each moment the campaign says its
    next wave is due, up to `until`: what a beat every few seconds would do."""
    beat_at(start)
    for _ in range(most):
        campaign.refresh_from_db()
        if campaign.next_run_at is None or campaign.next_run_at > until:
            return
        beat_at(campaign.next_run_at)
    raise AssertionError("the campaign never ran out of waves")


def sends(campaign) -> list[tuple[str, str, object]]:
    """(occurrence, user, the instant its wave was due) of every user the campaign reached."""
    rows = (
        CampaignRecipient.objects.filter(campaign=campaign, state="sent")
        .select_related("user", "message__campaign_send__run")
        .order_by("occurrence", "message__campaign_send__run__due_at", "user__app_user_id")
    )
    return [(r.occurrence, r.user.app_user_id, r.message.campaign_send.run.due_at) for r in rows]


@pytest.fixture
def two_zones(sandbox, tenant):
    tenant.time_zone = "UTC"
    tenant.save()
    return make_user(tenant, "berlin", "Europe/Berlin"), make_user(tenant, "new_york", "America/New_York")


def test_local_waves_follow_spring_forward_in_berlin_and_new_york_and_skipped_times_go_at_the_next_minute(
    two_zones, tenant, inbox
):
    # Sundays at 02:30 local: 14 Mar 2027 New York skips 02:00–03:00, 28 Mar Berlin does.
    campaign = make_campaign(
        tenant,
        schedule_kind="weekly",
        weekdays=[SUNDAY],
        send_time=time(2, 30),
        activated_at=utc(2027, 3, 12),
    )
    drive(campaign, start=utc(2027, 3, 12), until=utc(2027, 3, 29))

    assert sends(campaign) == [
        ("2027-03-14", "berlin", utc(2027, 3, 14, 1, 30)),  # CET, +01
        ("2027-03-14", "new_york", utc(2027, 3, 14, 7)),  # 02:30 does not exist: 03:00 EDT
        ("2027-03-21", "berlin", utc(2027, 3, 21, 1, 30)),
        ("2027-03-21", "new_york", utc(2027, 3, 21, 6, 30)),  # EDT, −04
        ("2027-03-28", "berlin", utc(2027, 3, 28, 1)),  # 02:30 does not exist: 03:00 CEST
        ("2027-03-28", "new_york", utc(2027, 3, 28, 6, 30)),
    ]
    received = inbox()
    assert {token: len(pushes) for token, pushes in received.items()} == {
        "token-berlin": 3,
        "token-new_york": 3,
    }
    push = received["token-berlin"][0]
    assert push.get("notification", push.get("data"))["title"] == "Good morning"
    assert Message.objects.filter(source="campaign").count() == 6  # one per wave that reached anyone


@pytest.mark.parametrize(
    ("at", "day", "first", "other"),
    [
        # Berlin shows 02:00–03:00 twice on 31 Oct 2027: the first 02:30 (CEST) only.
        (
            time(2, 30),
            date(2027, 10, 31),
            ("berlin", utc(2027, 10, 31, 0, 30)),
            ("new_york", utc(2027, 10, 31, 6, 30)),
        ),
        # New York shows 01:00–02:00 twice on 7 Nov 2027: the first 01:30 (EDT) only.
        (
            time(1, 30),
            date(2027, 11, 7),
            ("berlin", utc(2027, 11, 7, 0, 30)),
            ("new_york", utc(2027, 11, 7, 5, 30)),
        ),
    ],
)
def test_a_time_repeated_by_fall_back_reaches_each_user_once_at_its_first_occurrence(
    two_zones, tenant, inbox, at, day, first, other
):
    campaign = make_campaign(
        tenant, schedule_kind="weekly", weekdays=[SUNDAY], send_time=at, activated_at=utc(2027, 10, 29)
    )
    drive(campaign, start=utc(2027, 10, 29), until=utc(2027, 11, 8, 12))

    on_the_day = [(user, due) for occurrence, user, due in sends(campaign) if occurrence == day.isoformat()]
    assert sorted(on_the_day, key=lambda s: s[1]) == sorted([first, other], key=lambda s: s[1])
    assert {token: len(pushes) for token, pushes in inbox().items()} == {
        "token-berlin": 2,
        "token-new_york": 2,
    }
    # The repeated hour did not make a second wave.
    assert CampaignRun.objects.filter(campaign=campaign, occurrence=day).count() == 3  # Berlin, New York, UTC


def test_waves_span_kiritimati_to_pago_pago_and_the_audience_is_read_when_each_is_due(sandbox, tenant, inbox):
    tenant.time_zone = "UTC"
    tenant.save()
    make_user(tenant, "kiritimati", "Pacific/Kiritimati")
    make_user(tenant, "pago_pago", "Pacific/Pago_Pago")
    campaign = make_campaign(tenant, send_time=time(9), activated_at=utc(2027, 1, 4, 12))
    beat_at(utc(2027, 1, 4, 12))
    beat_at(utc(2027, 1, 4, 19))  # Kiritimati's 09:00 on the 5th, still the 4th in UTC
    make_user(tenant, "joined_later", "Pacific/Pago_Pago")  # after the occurrence began
    beat_at(utc(2027, 1, 5, 9))
    beat_at(utc(2027, 1, 5, 20))  # Pago Pago's 09:00 on the 5th, 25 hours after Kiritimati's

    assert [s for s in sends(campaign) if s[0] == "2027-01-05"] == [
        ("2027-01-05", "kiritimati", utc(2027, 1, 4, 19)),
        ("2027-01-05", "joined_later", utc(2027, 1, 5, 20)),
        ("2027-01-05", "pago_pago", utc(2027, 1, 5, 20)),
    ]
    assert set(inbox()) == {"token-kiritimati", "token-pago_pago", "token-joined_later"}


def test_a_user_who_flies_west_between_waves_gets_the_occurrence_once(sandbox, tenant, inbox):
    traveller = make_user(tenant, "traveller", "Asia/Tokyo")
    campaign = make_campaign(tenant, send_time=time(9), activated_at=utc(2027, 1, 4, 12))
    beat_at(utc(2027, 1, 4, 12))
    beat_at(utc(2027, 1, 5, 0))  # Tokyo's 09:00
    traveller.timezone = "America/Los_Angeles"
    traveller.save()
    beat_at(utc(2027, 1, 5, 0, 10))  # re-planned: Los Angeles now has a wave
    beat_at(utc(2027, 1, 5, 17))  # Los Angeles' 09:00, the same local date

    assert reached(campaign, "2027-01-05") == {"traveller": "sent"}
    assert len(inbox()["token-traveller"]) == 1
    la = CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 17))
    assert (la.state, la.recipients) == ("done", 0)


# --- Two beats on PostgreSQL, through the real dispatch -------------------------------------


@pytest.fixture
def no_sending(settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_make_one_message_per_wave_and_reach_each_user_once(no_sending):
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name="Acme", tenant_id="acme", time_zone="UTC")
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", ""]
    for i in range(40):
        make_user(tenant, f"u{i}", zones[i % len(zones)])
    campaign = make_campaign(tenant, activated_at=utc(2027, 1, 4, 12))

    def beat(when, barrier, errors):
        try:
            barrier.wait()
            scheduler.plan_due_campaigns(now=when)
            scheduler.skip_inactive_runs(now=when)
            for run_id, lease in scheduler.claim_due_runs(now=when):
                scheduler.run_wave(run_id=run_id, lease=lease, now=when)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    for when in [
        utc(2027, 1, 4, 12),
        utc(2027, 1, 5, 0),
        utc(2027, 1, 5, 8),
        utc(2027, 1, 5, 9),
        utc(2027, 1, 5, 14),
    ]:
        barrier, errors = threading.Barrier(2), []
        threads = [threading.Thread(target=beat, args=(when, barrier, errors)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    # The 5th: Tokyo, UTC (the default zone), Berlin, New York — one Message each.
    messages = Message.objects.filter(campaign_send__run__occurrence=date(2027, 1, 5))
    assert messages.count() == 4
    assert MessageRecipient.objects.filter(message__in=messages).count() == 40
    assert MessageRecipient.objects.filter(message__in=messages).values("user").distinct().count() == 40
    assert (
        CampaignRecipient.objects.filter(campaign=campaign, occurrence="2027-01-05", state="sent").count()
        == 40
    )
    # The 4th, activated at noon UTC: only New York's 09:00 was still to come.
    assert Message.objects.filter(campaign_send__run__occurrence=date(2027, 1, 4)).count() == 1
    assert connection.vendor == "postgresql"
