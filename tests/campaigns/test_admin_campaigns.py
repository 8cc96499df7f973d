"""Campaigns in the admin: the list, the editor (checked by the API's rules), the campaign page,
its lifecycle buttons, and tenant roles."""

import json

from campaigns import services
from campaigns.models import Campaign, CampaignRecipient, Status
from tests.staff import make_device

pytest_plugins = ["tests.staff_fixtures"]

NEW = "/admin/campaigns/campaign/new/"


def form(tenant, **changes) -> dict:
    base = {
        "tenant": tenant.pk,
        "name": "Cart abandoned",
        "description": "",
        "kind": "triggered",
        "trigger_event": "cart_add",
        "trigger_params": "",
        "delay_value": "2",
        "delay_unit": "60",
        "cancel_event": "purchase",
        "schedule_kind": "",
        "send_time": "",
        "send_date": "",
        "month_days": "",
        "zone_mode": "local",
        "zone": "",
        "audience": "all",
        "segment": "",
        "rules": json.dumps({"version": 1, "include": [], "exclude": []}),
        "title": "Still thinking?",
        "body": "Your cart misses you",
        "image_url": "",
        "click_link": "",
        "content_doc": json.dumps(
            {
                "localizations": {"tr": {"title": "Sepet", "body": "Sepetin"}},
                "variants": [],
                "variant_mode": "split",
            }
        ),
        "content_mode": "rotate",
        "cooldown": "1d",
        "quiet_hours_action": "defer",
    }
    return {**base, **changes}


def make(tenant, **fields) -> Campaign:
    return services.create_campaign(
        tenant=tenant,
        fields={
            "name": "Digest",
            "kind": "scheduled",
            "schedule_kind": "daily",
            "send_time": "09:00",
            "zone_mode": "local",
            "content": {"language": "en", "variants": [{"title": "Hi", "body": "There"}]},
            **fields,
        },
    )


def test_an_editor_creates_a_triggered_campaign_with_its_languages(tenant, editor):
    response = editor.post(NEW, form(tenant))

    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get()
    assert campaign.status == Status.DRAFT and campaign.delay_seconds == 120
    assert campaign.cancel_event == "purchase" and campaign.created_by.username == "eddie"
    assert campaign.content["variants"][0]["localizations"]["tr"]["title"] == "Sepet"
    assert response["Location"].endswith(f"/admin/campaigns/campaign/{campaign.pk}/change/")


def test_an_editor_creates_a_weekly_scheduled_campaign(tenant, editor):
    data = form(
        tenant,
        kind="scheduled",
        schedule_kind="weekly",
        send_time="09:00",
        weekdays=["0", "3"],
        cancel_event="",
    )

    assert editor.post(NEW, data).status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.weekdays == [0, 3] and campaign.trigger_event == "" and campaign.zone_mode == "local"


def test_the_editor_refuses_what_the_api_refuses_beside_the_field(tenant, editor):
    response = editor.post(NEW, form(tenant, delay_value="0"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "A cancel event needs a delay" in page and "hd-field-cancel_event" in page
    assert not Campaign.objects.exists()


def test_the_editor_names_the_path_of_bad_param_filters(tenant, editor):
    response = editor.post(NEW, form(tenant, trigger_params='[{"param": "a", "op": "~", "value": 1}]'))

    assert "trigger_params[0].op" in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_variant_in_the_content_doc_is_checked_with_its_path(tenant, editor):
    doc = {"localizations": {"tr": {"title": "a", "body": "b"}}, "variants": [{"title": "B", "body": "b"}]}

    response = editor.post(NEW, form(tenant, content_doc=json.dumps(doc)))

    assert "variants[1].localizations" in response.content.decode()
    assert not Campaign.objects.exists()


def test_the_list_shows_status_kind_sends_and_health(tenant, viewer):
    make(tenant)

    page = viewer.get("/admin/campaigns/campaign/").content.decode()

    assert "Digest" in page and "Draft" in page and "Scheduled" in page and "Too little data" in page
    assert "Daily at 09:00" in page


def test_the_campaign_page_shows_skips_by_reason_and_health(tenant, viewer):
    campaign = make(tenant)
    user = make_device(tenant, "t1", user="ayse").user
    CampaignRecipient.objects.create(
        campaign=campaign, user=user, occurrence="2026-03-02", state="skipped", reason="cooldown", version=1
    )

    page = viewer.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()

    assert "Skipped, by reason" in page and "Cooldown" in page and "Too little data" in page
    assert "Runs and waves" in page and 'id="hd-activate"' not in page  # viewers get no buttons


def test_an_editor_activates_pauses_resumes_and_archives_from_the_page(tenant, editor):
    campaign = make(tenant)
    url = f"/admin/campaigns/campaign/{campaign.pk}"

    assert 'id="hd-activate"' in editor.get(f"{url}/change/").content.decode()
    for verb, status in [
        ("activate", "active"),
        ("pause", "paused"),
        ("resume", "active"),
        ("archive", "archived"),
    ]:
        assert editor.post(f"{url}/{verb}/").status_code == 302
        campaign.refresh_from_db()
        assert campaign.status == status

    editor.post(f"{url}/resume/")
    campaign.refresh_from_db()
    assert campaign.status == "archived"


def test_viewers_read_campaigns_but_cannot_change_them(tenant, viewer):
    campaign = make(tenant)

    assert viewer.get(NEW).status_code == 403
    assert viewer.get(f"/admin/campaigns/campaign/{campaign.pk}/edit/").status_code == 403
    assert viewer.post(f"/admin/campaigns/campaign/{campaign.pk}/activate/").status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_another_tenants_campaign_is_a_404(other_tenant, editor):
    campaign = make(other_tenant)

    assert editor.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 404
    assert editor.post(f"/admin/campaigns/campaign/{campaign.pk}/archive/").status_code == 404
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_editing_an_active_campaign_makes_a_new_version(tenant, editor):
    campaign = make(tenant)
    services.activate(campaign)
    page = editor.get(f"/admin/campaigns/campaign/{campaign.pk}/edit/").content.decode()
    assert "Digest" in page

    response = editor.post(
        f"/admin/campaigns/campaign/{campaign.pk}/edit/",
        form(
            tenant, name="Digest", kind="scheduled", schedule_kind="daily", send_time="18:30", cancel_event=""
        ),
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.send_time.hour == 18 and campaign.version == 2 and campaign.status == "active"


def test_the_summary_view_says_when_it_sends_and_to_how_many(tenant, editor):
    make_device(tenant, "t1", user="ayse")

    answer = editor.post(
        "/admin/campaigns/campaign/summary/",
        form(tenant, kind="scheduled", schedule_kind="weekly", send_time="09:00", weekdays=["0"]),
    ).json()

    assert answer["summary"] == "Every Monday at 09:00 in each user's time zone"
    assert answer["audience"].startswith("≈ 1 user · 1 device")


def test_the_page_lists_every_variant_even_before_rotation_reaches_it(tenant, viewer):
    campaign = make(
        tenant,
        content={
            "language": "en",
            "variants": [
                {"title": "First words", "body": "a", "localizations": {"tr": {"title": "İlk", "body": "a"}}},
                {
                    "title": "Second words",
                    "body": "b",
                    "localizations": {"tr": {"title": "İkinci", "body": "b"}},
                },
            ],
        },
    )

    page = viewer.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()

    assert "First words" in page and "Second words" in page and "+ 1 language" in page
