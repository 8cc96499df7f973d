"""A campaign's lifecycle (Draft → Active ⇄ Paused → Archived), its versions, and its stats."""

from datetime import timedelta

import pytest

from campaigns import services
from campaigns.models import CampaignSend, CampaignVersion
from messaging.services import fan_out
from tests.campaigns.conftest import START, content, make_campaign, make_user


def test_a_campaign_goes_draft_active_paused_active_archived(tenant):
    campaign = make_campaign(tenant, activate=False)
    assert campaign.status == "draft"
    services.activate(campaign)
    services.pause(campaign)
    services.resume(campaign)
    services.archive(campaign)
    assert campaign.status == "archived" and campaign.archived_at is not None


@pytest.mark.parametrize(
    ("status", "step"),
    [
        ("draft", "pause"),
        ("draft", "resume"),
        ("active", "activate"),
        ("active", "resume"),
        ("paused", "pause"),
    ],
)
def test_an_illegal_transition_is_refused(tenant, status, step):
    campaign = make_campaign(tenant, activate=False)
    if status != "draft":
        services.activate(campaign)
    if status == "paused":
        services.pause(campaign)
    with pytest.raises(services.CampaignError):
        getattr(services, step)(campaign)
    campaign.refresh_from_db()
    assert campaign.status == status


def test_an_archived_campaign_is_final(tenant):
    campaign = make_campaign(tenant)
    services.archive(campaign)
    for step in (services.activate, services.pause, services.resume, services.archive):
        with pytest.raises(services.CampaignError):
            step(campaign)
    with pytest.raises(services.CampaignError):
        services.update_campaign(campaign=campaign, fields={"name": "Again"})


def test_editing_what_is_sent_makes_a_new_version_that_later_sends_record(tenant, no_sending):
    campaign = make_campaign(tenant, kind="scheduled", trigger_event="")
    user = make_user(tenant, "ayse")
    first = services.dispatch(campaign=campaign, user_ids=[user.pk], occurrence="a", now=START)

    renamed = services.update_campaign(campaign=campaign, fields={"name": "Renamed"})
    assert renamed.version == 1  # the name changes nothing sent
    edited = services.update_campaign(campaign=campaign, fields={"content": content("New title")})
    assert edited.version == 2
    second = services.dispatch(
        campaign=edited, user_ids=[user.pk], occurrence="b", now=START + timedelta(days=2)
    )

    assert [v.number for v in CampaignVersion.objects.filter(campaign=campaign)] == [2, 1]
    assert CampaignSend.objects.get(message=first.message).version == 1
    assert CampaignSend.objects.get(message=second.message).version == 2
    assert second.message.title == "New title"


def test_deactivating_the_tenant_pauses_its_active_campaigns_and_says_why(tenant):
    active = make_campaign(tenant, name="active")
    draft = make_campaign(tenant, name="draft", activate=False)
    tenant.deactivate()
    active.refresh_from_db()
    draft.refresh_from_db()
    assert (active.status, active.status_reason) == ("paused", "The tenant was deactivated.")
    assert draft.status == "draft"


def test_campaign_stats_count_sends_skips_by_reason_and_variants(tenant, no_sending):
    campaign = make_campaign(
        tenant, kind="scheduled", trigger_event="", content=content("A", "B"), cooldown="1d"
    )
    users = [make_user(tenant, f"u{i}") for i in range(3)]
    deviceless = make_user(tenant, "nobody", devices=0)
    result = services.dispatch(
        campaign=campaign, user_ids=[u.pk for u in [*users, deviceless]], occurrence="a", now=START
    )
    fan_out(message_id=result.message.pk)
    services.dispatch(
        campaign=campaign, user_ids=[users[0].pk], occurrence="b", now=START + timedelta(hours=1)
    )

    stats = services.campaign_stats(campaign)

    assert stats["users_sent"] == 3
    assert stats["skipped"] == {"no_device": 1, "cooldown": 1}
    assert stats["messages"] == 1 and stats["targeted"] == 3
    assert [row["variant"] for row in stats["per_variant"]] == [0]  # rotation starts everyone at A
