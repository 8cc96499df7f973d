"""dispatch: one message per send, each user once per occurrence, and skips with their reasons."""

from datetime import timedelta

from campaigns import services
from campaigns.models import CampaignRecipient, CampaignSend
from messaging.models import Delivery, Message, MessageRecipient
from messaging.services import fan_out
from tests.campaigns.conftest import START, content, make_campaign, make_user


def test_dispatch_makes_one_campaign_message_for_everyone_it_sends_to(tenant, no_sending):
    campaign = make_campaign(tenant, kind="scheduled", trigger_event="")
    users = [make_user(tenant, f"u{i}") for i in range(3)]
    result = services.dispatch(
        campaign=campaign, user_ids=[u.pk for u in users], occurrence="2026-03-02", now=START
    )
    assert result.sent == 3 and result.skipped == {}
    message = result.message
    assert message.source == Message.Source.CAMPAIGN and message.audience == "recipients"
    assert message.status == Message.Status.SENDING
    assert CampaignSend.objects.get(message=message).version == campaign.version
    assert MessageRecipient.objects.filter(message=message).count() == 3
    fan_out(message_id=message.pk)
    assert Delivery.objects.filter(message=message).count() == 3


def test_dispatch_reaches_a_user_once_per_occurrence(tenant, no_sending):
    campaign = make_campaign(tenant, kind="scheduled", trigger_event="", cooldown="5m")
    user = make_user(tenant, "u1")
    first = services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence="2026-03-02", now=START)
    again = services.dispatch(
        campaign=campaign, user_ids=[user.pk], occurrence="2026-03-02", now=START + timedelta(hours=1)
    )
    assert first.sent == 1
    assert again.sent == 0 and again.message is None
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 1


def test_dispatch_skips_users_in_their_cooldown_and_without_a_device(tenant, no_sending):
    campaign = make_campaign(tenant, kind="scheduled", trigger_event="", cooldown="1h")
    reached = make_user(tenant, "reached")
    deviceless = make_user(tenant, "deviceless", devices=0)
    services.dispatch(campaign=campaign, user_ids=[reached.pk], occurrence="a", now=START)
    result = services.dispatch(
        campaign=campaign,
        user_ids=[reached.pk, deviceless.pk],
        occurrence="b",
        now=START + timedelta(minutes=30),
    )
    assert result.sent == 0
    assert result.skipped == {"cooldown": 1, "no_device": 1}


def test_rotation_gives_a_user_the_next_variant_each_time(tenant, no_sending):
    campaign = make_campaign(
        tenant, kind="scheduled", trigger_event="", cooldown="5m", content=content("A", "B", "C")
    )
    user = make_user(tenant, "u1")
    titles = []
    for i in range(5):
        result = services.dispatch(
            campaign=campaign, user_ids=[user.pk], occurrence=f"o{i}", now=START + timedelta(minutes=10 * i)
        )
        fan_out(message_id=result.message.pk)
        delivery = Delivery.objects.get(message=result.message)
        titles.append("ABC"[delivery.variant])
    assert titles == ["A", "B", "C", "A", "B"]
