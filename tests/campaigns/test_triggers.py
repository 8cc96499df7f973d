"""Triggered campaigns: events in, one send per trigger occurrence out, after the delay,
unless the cancel event happened or the user left the audience."""

from datetime import timedelta

import time_machine

from campaigns import services, triggers
from campaigns.models import CampaignRecipient, PendingTrigger
from messaging.models import Message, MessageRecipient
from tests.campaigns.conftest import START, event, make_campaign, make_user


def ledger(campaign):
    return sorted(
        CampaignRecipient.objects.filter(campaign=campaign).values_list(
            "user__app_user_id", "state", "reason"
        )
    )


def test_a_delayed_trigger_sends_after_its_delay_unless_the_cancel_event_happened(
    tenant, app_key, no_sending
):
    campaign = make_campaign(tenant, delay_seconds=120, cancel_event="purchase")
    make_user(tenant, "ayse")
    make_user(tenant, "bora")
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="ayse")
        event(tenant, app_key, user="bora")
    with time_machine.travel(START + timedelta(seconds=60), tick=False):
        event(tenant, app_key, user="bora", name="purchase", at=START + timedelta(seconds=60))

    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=61))
    assert triggers.fire_due(now=START + timedelta(seconds=119)) == 0  # not due yet
    assert PendingTrigger.objects.filter(state="pending").count() == 2

    assert triggers.fire_due(now=START + timedelta(seconds=120)) == 2
    assert ledger(campaign) == [("ayse", "sent", ""), ("bora", "skipped", "cancelled")]
    message = Message.objects.get(source="campaign")
    assert list(
        MessageRecipient.objects.filter(message=message).values_list("user__app_user_id", flat=True)
    ) == ["ayse"]


def test_a_retried_event_matched_twice_sends_once(tenant, app_key, no_sending):
    campaign = make_campaign(tenant)
    make_user(tenant, "ayse")
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="ayse")
        event(tenant, app_key, user="ayse")  # the app retries: the same fingerprint
    for _ in range(2):
        triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=10))
        triggers.fire_due(now=START + timedelta(seconds=10))
    assert PendingTrigger.objects.count() == 1
    assert ledger(campaign) == [("ayse", "sent", "")]
    assert Message.objects.filter(source="campaign").count() == 1


def test_param_filters_pick_the_events_that_trigger(tenant, app_key, no_sending):
    campaign = make_campaign(tenant, trigger_params=[{"param": "amount", "op": ">", "value": 50}])
    for name in ("big", "small", "text"):
        make_user(tenant, name)
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="big", amount=70)
        event(tenant, app_key, user="small", amount=20)
        event(tenant, app_key, user="text", amount="70")  # a string never compares with a number
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=10))
    triggers.fire_due(now=START + timedelta(seconds=10))
    assert ledger(campaign) == [("big", "sent", "")]


def test_the_audience_is_checked_when_the_send_is_due(tenant, app_key, no_sending):
    rules = {
        "version": 1,
        "include": [[{"type": "property", "property": "country", "op": "in", "value": ["TR"]}]],
        "exclude": [],
    }
    campaign = make_campaign(tenant, delay_seconds=600, audience="rules", rules=rules)
    make_user(tenant, "ayse")
    make_user(tenant, "bora")
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="ayse")
        event(tenant, app_key, user="bora")
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=10))
    tenant.app_users.filter(app_user_id="bora").update(country="DE")  # moved meanwhile
    triggers.fire_due(now=START + timedelta(seconds=600))
    assert ledger(campaign) == [("ayse", "sent", ""), ("bora", "skipped", "audience")]


def test_events_recorded_before_the_campaign_went_live_trigger_nothing(tenant, app_key, no_sending):
    make_user(tenant, "ayse")
    with time_machine.travel(START - timedelta(minutes=1), tick=False):
        event(tenant, app_key, user="ayse")
    campaign = make_campaign(tenant, now=START)
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=10))
    assert not PendingTrigger.objects.filter(campaign=campaign).exists()


def test_two_triggers_of_one_user_in_a_batch_send_once_and_the_other_waits_out_the_cooldown(
    tenant, app_key, no_sending
):
    campaign = make_campaign(tenant, cooldown="1h")
    make_user(tenant, "ayse")
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="ayse", n=1)
        event(tenant, app_key, user="ayse", n=2)
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=10))
    triggers.fire_due(now=START + timedelta(seconds=10))
    assert ledger(campaign) == [("ayse", "sent", ""), ("ayse", "skipped", "cooldown")]


def test_pausing_skips_what_falls_due_meanwhile_and_resuming_sends_no_burst(tenant, app_key, no_sending):
    campaign = make_campaign(tenant, delay_seconds=300, cooldown="5m")
    for name in ("early", "late", "paused"):
        make_user(tenant, name)
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="early")
    with time_machine.travel(START + timedelta(seconds=200), tick=False):
        event(tenant, app_key, user="late", at=START + timedelta(seconds=200))
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=210))

    services.pause(campaign, now=START + timedelta(seconds=250))
    with time_machine.travel(START + timedelta(seconds=260), tick=False):
        event(tenant, app_key, user="paused", at=START + timedelta(seconds=260))  # while paused
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=270))
    services.resume(campaign, now=START + timedelta(seconds=400))  # "early" fell due at 300
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=400))
    triggers.fire_due(now=START + timedelta(seconds=500))

    assert ledger(campaign) == [("early", "skipped", "paused"), ("late", "sent", "")]


def test_a_paused_campaign_skips_triggers_that_fall_due(tenant, app_key, no_sending):
    campaign = make_campaign(tenant, delay_seconds=60)
    make_user(tenant, "ayse")
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="ayse")
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=1))
    services.pause(campaign, now=START + timedelta(seconds=2))
    triggers.fire_due(now=START + timedelta(seconds=60))
    assert ledger(campaign) == [("ayse", "skipped", "paused")]
    assert not Message.objects.filter(source="campaign").exists()
