"""Races on PostgreSQL, with real concurrent transactions (one connection per thread):
two workers, retried events and concurrent triggers still send once, within the limits."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import time_machine
from django.db import connection

from campaigns import services, triggers
from campaigns.models import CampaignRecipient, PendingTrigger
from messaging.models import MarketingDay, Message, MessageRecipient
from tests.campaigns.conftest import START, event, make_campaign, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def at_once(n: int, work) -> list:
    """Run work(i) for i in range(n), each in its own thread and connection, released together."""
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(timeout=10)
            return work(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def test_retried_events_and_two_workers_send_each_trigger_once(postgres_only, tenant, app_key, no_sending):
    campaign = make_campaign(tenant)
    names = [f"u{i}" for i in range(20)]
    for name in names:
        make_user(tenant, name)
    with time_machine.travel(START, tick=False):
        for name in names:
            event(tenant, app_key, user=name)
            event(tenant, app_key, user=name)  # the app's retry: the same event
    now = START + timedelta(seconds=10)

    at_once(2, lambda i: triggers.match_events(tenant_id=tenant.pk, now=now))
    at_once(2, lambda i: triggers.fire_due(now=now, batch=5))

    assert PendingTrigger.objects.count() == 20
    assert set(PendingTrigger.objects.values_list("state", flat=True)) == {"done"}
    assert CampaignRecipient.objects.filter(campaign=campaign, state="sent").count() == 20
    assert MessageRecipient.objects.count() == 20  # nobody in two messages


def test_a_batch_fired_twice_at_once_after_its_lease_ran_out_sends_once(
    postgres_only, tenant, app_key, no_sending
):
    campaign = make_campaign(tenant)
    for i in range(10):
        make_user(tenant, f"u{i}")
        with time_machine.travel(START, tick=False):
            event(tenant, app_key, user=f"u{i}")
    now = START + timedelta(seconds=10)
    triggers.match_events(tenant_id=tenant.pk, now=now)
    batch = list(PendingTrigger.objects.all())

    # A slow worker and the one that took its batch over when the lease ran out.
    at_once(2, lambda i: triggers._fire(campaign.pk, batch, token="", now=now))

    assert CampaignRecipient.objects.filter(campaign=campaign, state="sent").count() == 10
    assert Message.objects.filter(source="campaign").count() == 1


def test_concurrent_triggers_of_one_user_send_once_within_the_cooldown(postgres_only, tenant, no_sending):
    campaign = make_campaign(tenant, kind="scheduled", trigger_event="", cooldown="1h")
    user = make_user(tenant, "ayse")

    results = at_once(
        8, lambda i: services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence=f"e{i}", now=START)
    )

    assert sum(r.sent for r in results) == 1
    assert sum(r.skipped.get("cooldown", 0) for r in results) == 7
    assert CampaignRecipient.objects.filter(state="sent").count() == 1


def test_concurrent_campaign_sends_to_one_user_stop_at_the_frequency_cap(postgres_only, tenant, no_sending):
    tenant.marketing_daily_cap = 2
    tenant.save()
    campaigns = [
        make_campaign(tenant, name=f"c{i}", kind="scheduled", trigger_event="", cooldown="5m")
        for i in range(6)
    ]
    user = make_user(tenant, "ayse", timezone="Europe/Istanbul")

    results = at_once(
        6, lambda i: services.dispatch(campaign=campaigns[i], user_ids=[user.pk], occurrence="o", now=START)
    )

    assert sum(r.sent for r in results) == 2
    assert sum(r.skipped.get("frequency_cap", 0) for r in results) == 4
    assert MarketingDay.objects.get(user=user).count == 2
