"""A campaign's stats and health from real sends: the API's /stats, the campaign page and the
list agree with what dispatch recorded."""

from datetime import timedelta

from django.utils import timezone

from campaigns import health, services
from campaigns.models import CampaignRun
from devices.models import AppUser
from messaging.models import Delivery, Message
from messaging.services import fan_out
from tests.campaigns.conftest import content, make_campaign, make_user
from tests.staff import make_message

pytest_plugins = ["tests.staff_fixtures"]


def sent_campaign(tenant, *, users=60, opened=0, failed=0):
    """A scheduled campaign sent to `users` users (two variants), with deliveries marked sent,
    some opened and some failed, as the worker would leave them."""
    now = timezone.now()
    campaign = make_campaign(
        tenant,
        kind="scheduled",
        trigger_event="",
        content=content("A", "B"),
        content_mode="split",
        cooldown="5m",
        now=now,
    )
    ids = [make_user(tenant, f"u{i}").pk for i in range(users)]
    AppUser.objects.filter(pk__in=ids).update(last_seen_at=now)
    result = services.dispatch(campaign=campaign, user_ids=ids, occurrence="2026-03-02", now=now)
    fan_out(message_id=result.message.pk)
    deliveries = list(Delivery.objects.filter(message=result.message).order_by("pk"))
    for i, delivery in enumerate(deliveries):
        delivery.status = Delivery.Status.FAILED if i < failed else Delivery.Status.SENT
        delivery.opened_at = now if failed <= i < failed + opened else None
        delivery.save()
    Message.objects.filter(pk=result.message.pk).update(
        sent_count=len(deliveries) - failed, failed_count=failed, opened_count=opened
    )
    return campaign


def test_stats_count_users_deliveries_opens_and_variants(tenant, server, no_sending):
    campaign = sent_campaign(tenant, users=60, opened=6)

    stats = server.get(f"/api/v1/campaigns/{campaign.pk}/stats").json()

    assert stats["users_sent"] == 60 and stats["sent"] == 60 and stats["opened"] == 6
    assert sorted(v["variant"] for v in stats["per_variant"]) == [0, 1]
    assert sum(v["sent"] for v in stats["per_variant"]) == 60
    assert stats["health"]["score"] is not None and len(stats["health"]["parts"]) == 4


def test_a_campaign_opened_above_the_tenants_median_with_clean_delivery_is_excellent(tenant, no_sending):
    for n in range(3):  # the tenant's other messages opened at 5 %
        make_message(tenant, title=f"m{n}", sent_count=100, opened_count=5)
    campaign = sent_campaign(tenant, users=60, opened=6)  # 10 %

    result = health.score_campaign(campaign)

    assert result.band == "Excellent", result
    opens = next(p for p in result.parts if p["name"] == "opens")
    assert "is above the tenant's median" in opens["text"]


def test_failures_and_no_opens_bring_a_campaign_down_to_critical(tenant, no_sending):
    for n in range(3):
        make_message(tenant, title=f"m{n}", sent_count=100, opened_count=20)
    campaign = sent_campaign(tenant, users=60, opened=0, failed=20)
    AppUser.objects.update(last_seen_at=timezone.now() - timedelta(days=90))

    result = health.score_campaign(campaign)

    assert result.band == "Critical" and result.score < 40
    assert "below the tenant's median 20.0 %" in next(p for p in result.parts if p["name"] == "opens")["text"]


def test_the_campaign_page_shows_variants_runs_and_health_parts(tenant, viewer, no_sending):
    campaign = sent_campaign(tenant, users=60, opened=6)
    CampaignRun.objects.create(
        campaign=campaign,
        occurrence=timezone.now().date(),
        due_at=timezone.now(),
        zones=["Europe/Istanbul", "Europe/Berlin", "Asia/Tokyo", "UTC"],
        state="done",
        recipients=60,
    )

    page = viewer.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()

    assert "Runs and waves" in page and "Europe/Istanbul, Europe/Berlin, Asia/Tokyo +1" in page
    assert "10.0 %" in page  # variant open rates and the overall one
    assert "Delivery rate 100.0 % is healthy" in page
    list_page = viewer.get("/admin/campaigns/campaign/").content.decode()
    assert "hd-health" in list_page and "60" in list_page
