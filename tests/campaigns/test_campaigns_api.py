"""/api/v1/campaigns: server-key CRUD, lifecycle transitions, stats, and every field checked
with the path of its fault."""

import json

import pytest
from rest_framework.test import APIClient

from audiences.models import Segment
from campaigns.models import Campaign, CampaignVersion, Status
from tenants.models import ApiKey, Tenant, hash_key

CART = {
    "name": "Cart abandoned",
    "kind": "triggered",
    "trigger_event": "cart_add",
    "trigger_params": [{"param": "value", "op": ">", "value": 20}],
    "delay_seconds": 120,
    "cancel_event": "purchase",
    "cooldown": "1d",
    "content": {
        "variants": [
            {
                "title": "Still thinking?",
                "body": "Your cart misses you",
                "localizations": {"tr": {"title": "Sepet", "body": "Sepetin"}},
            },
            {
                "title": "Forgot something?",
                "body": "It is still there",
                "localizations": {"tr": {"title": "Unuttun", "body": "Hâlâ orada"}},
            },
        ]
    },
}
DIGEST = {
    "name": "Daily digest",
    "kind": "scheduled",
    "schedule_kind": "weekly",
    "weekdays": [4, 0, 0],
    "send_time": "09:00",
    "zone_mode": "local",
    "content": {"variants": [{"title": "Your week", "body": "What happened"}]},
}


def create(server, body):
    response = server.post("/api/v1/campaigns", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_triggered_campaign_is_created_read_listed_changed_and_deleted(server):
    body = create(server, CART)
    assert body["status"] == "draft" and body["version"] == 1
    assert body["trigger_params"] == [{"param": "value", "op": ">", "value": 20}]
    assert body["content"]["language"] == "en" and len(body["content"]["variants"]) == 2
    assert body["audience"] == {"kind": "all"}

    assert server.get(f"/api/v1/campaigns/{body['id']}").json()["name"] == "Cart abandoned"
    listed = server.get("/api/v1/campaigns").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]

    changed = server.patch(f"/api/v1/campaigns/{body['id']}", {"delay_seconds": 600}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["delay_seconds"] == 600 and changed.json()["version"] == 2
    assert changed.json()["cancel_event"] == "purchase"
    assert CampaignVersion.objects.filter(campaign_id=body["id"]).count() == 2

    assert server.delete(f"/api/v1/campaigns/{body['id']}").status_code == 204
    assert not Campaign.objects.exists()


def test_a_weekly_schedule_keeps_its_weekdays_sorted_and_once(server):
    body = create(server, DIGEST)

    assert body["weekdays"] == [0, 4] and body["send_time"] == "09:00" and body["zone_mode"] == "local"
    assert body["trigger_event"] == "" and body["content_mode"] == "rotate"


def test_a_campaign_goes_draft_active_paused_active_archived_and_no_further(server):
    pk = create(server, CART)["id"]

    assert server.post(f"/api/v1/campaigns/{pk}/pause").status_code == 409
    assert server.post(f"/api/v1/campaigns/{pk}/activate").json()["status"] == "active"
    assert server.post(f"/api/v1/campaigns/{pk}/activate").status_code == 409
    assert server.post(f"/api/v1/campaigns/{pk}/pause").json()["status"] == "paused"
    assert server.post(f"/api/v1/campaigns/{pk}/resume").json()["status"] == "active"
    assert server.post(f"/api/v1/campaigns/{pk}/archive").json()["status"] == "archived"

    refused = server.post(f"/api/v1/campaigns/{pk}/resume")
    assert refused.status_code == 409 and refused.json()["error"] == "illegal_transition"
    assert server.patch(f"/api/v1/campaigns/{pk}", {"name": "x"}, format="json").status_code == 409


def test_only_a_draft_is_deleted_others_are_archived_instead(server):
    pk = create(server, CART)["id"]
    server.post(f"/api/v1/campaigns/{pk}/activate")

    refused = server.delete(f"/api/v1/campaigns/{pk}")

    assert refused.status_code == 409 and refused.json()["error"] == "not_a_draft"
    assert Campaign.objects.get().status == Status.ACTIVE


def test_an_active_campaign_cannot_change_its_kind(server):
    pk = create(server, CART)["id"]
    server.post(f"/api/v1/campaigns/{pk}/activate")

    refused = server.patch(
        f"/api/v1/campaigns/{pk}", {k: v for k, v in DIGEST.items() if k != "name"}, format="json"
    )

    assert refused.status_code == 409 and refused.json()["field"] == "kind"


def test_a_draft_changes_kind_and_loses_the_old_kinds_fields(server):
    pk = create(server, CART)["id"]

    changed = server.patch(
        f"/api/v1/campaigns/{pk}", {k: v for k, v in DIGEST.items() if k != "name"}, format="json"
    )

    assert changed.status_code == 200, changed.content
    assert changed.json()["trigger_event"] == "" and changed.json()["cancel_event"] == ""
    assert changed.json()["schedule_kind"] == "weekly"


def test_a_duplicate_name_is_a_409(server):
    create(server, CART)

    response = server.post("/api/v1/campaigns", CART, format="json")

    assert response.status_code == 409 and response.json()["field"] == "name"
    assert Campaign.objects.count() == 1


@pytest.fixture
def foreign(db):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    campaign = Campaign.objects.create(tenant=other, name="Theirs", kind="triggered", trigger_event="x")
    segment = Segment.objects.create(
        tenant=other, name="Theirs", rules={"version": 1, "include": [], "exclude": []}
    )
    return campaign, segment


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/activate"),
        ("post", "/archive"),
        ("get", "/stats"),
    ],
)
def test_another_tenants_campaign_is_a_404(server, foreign, method, suffix):
    campaign, _ = foreign

    response = getattr(server, method)(f"/api/v1/campaigns/{campaign.pk}{suffix}", {}, format="json")

    assert response.status_code == 404
    campaign.refresh_from_db()
    assert campaign.status == "draft" and campaign.name == "Theirs"


def test_another_tenants_campaigns_are_not_listed(server, foreign):
    assert server.get("/api/v1/campaigns").json()["count"] == 0


def test_another_tenants_segment_is_refused_as_the_messages_api_refuses_it(server, foreign):
    _, segment = foreign

    response = server.post(
        "/api/v1/campaigns",
        {**CART, "audience": {"kind": "segment", "segment_id": segment.pk}},
        format="json",
    )

    assert response.status_code == 400 and response.json()["field"] == "audience.segment_id"
    assert not Campaign.objects.filter(name=CART["name"]).exists()


def test_a_segment_of_the_tenant_is_the_audience(server, tenant):
    segment = Segment.objects.create(
        tenant=tenant, name="Mine", rules={"version": 1, "include": [], "exclude": []}
    )

    body = create(server, {**CART, "audience": {"kind": "segment", "segment_id": segment.pk}})

    assert body["audience"] == {"kind": "segment", "segment_id": segment.pk}


def test_an_app_key_may_not_use_the_campaigns_api(tenant):
    raw = "hrld_app_campui-" + "a" * 32
    ApiKey.objects.create(
        tenant=tenant, name="app", kind=ApiKey.Kind.APP, key_hash=hash_key(raw), prefix=raw[:15]
    )
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=raw)

    assert client.get("/api/v1/campaigns").status_code in (401, 403)


def _with(base, **changes):
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not ...}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with(CART, name="a\x00b"), "name"),
        (_with(CART, name="x" * 201), "name"),
        (_with(CART, name=7), "name"),
        (_with(CART, kind="sometimes"), "kind"),
        (_with(CART, trigger_event=...), "trigger_event"),
        (_with(CART, trigger_event="   "), "trigger_event"),
        (_with(CART, trigger_event="e" * 201), "trigger_event"),
        (_with(CART, trigger_params=[{"param": "amount", "op": "~", "value": 1}]), "trigger_params[0].op"),
        (_with(CART, trigger_params=[{"param": "1x", "op": "=", "value": 1}]), "trigger_params[0].param"),
        (
            _with(CART, trigger_params=[{"param": "a", "op": "=", "value": "x\x00"}]),
            "trigger_params[0].value",
        ),
        (_with(CART, trigger_params={"param": "a"}), "trigger_params"),
        (_with(CART, delay_seconds=30 * 86400 + 1), "delay_seconds"),
        (_with(CART, delay_seconds=-1), "delay_seconds"),
        (_with(CART, delay_seconds="60"), "delay_seconds"),
        (_with(CART, delay_seconds=0), "cancel_event"),
        (_with(CART, cancel_event="cart_add"), "cancel_event"),
        (_with(CART, cooldown="2h"), "cooldown"),
        (_with(CART, content_mode="split"), "content_mode"),
        (_with(CART, send_time="09:00"), "send_time"),
        (_with(CART, content={"variants": []}), "content.variants"),
        (_with(CART, content={"variants": [{"title": "a"}]}), "content.variants[0].body"),
        (_with(CART, content={"variants": [{"title": "a\ud800", "body": "b"}]}), "content"),
        (
            _with(
                CART,
                content={
                    "variants": [
                        {"title": "a", "body": "b", "localizations": {"xx": {"title": "t", "body": "b"}}}
                    ]
                },
            ),
            "content.variants[0].localizations.xx",
        ),
        (
            _with(
                CART,
                content={
                    "variants": [
                        {"title": "a", "body": "b", "localizations": {"en": {"title": "t", "body": "b"}}}
                    ]
                },
            ),
            "content.variants[0].localizations.en",
        ),
        (
            _with(
                CART,
                content={
                    "variants": [
                        {"title": "a", "body": "b", "localizations": {"tr": {"title": "t", "body": "b"}}},
                        {"title": "a", "body": "b"},
                    ]
                },
            ),
            "content.variants[1].localizations.tr",
        ),
        (
            _with(
                CART, content={"variants": [{"title": "a", "body": "b" * 2000}], "data": {"k": "v" * 3000}}
            ),
            "content.variants[0].body",
        ),
        (
            _with(
                CART, content={"variants": [{"title": "a", "body": "b", "click_link": "javascript:alert(1)"}]}
            ),
            "content.variants[0].click_link",
        ),
        (
            _with(CART, content={"variants": [{"title": "a", "body": "b"}], "data": {"from": "x"}}),
            "content.data",
        ),
        (
            _with(CART, content={"variants": [{"title": "a", "body": "b"}], "ttl_seconds": 10**9}),
            "content.ttl_seconds",
        ),
        (_with(CART, content={"variants": [{"title": "a", "body": "b"}], "surprise": 1}), "content.surprise"),
        (_with(CART, audience={"kind": "rules"}), "audience.rules"),
        (_with(CART, audience={"kind": "all", "segment_id": 1}), "audience.segment_id"),
        (_with(CART, audience={"kind": "segment", "segment_id": "1"}), "audience.segment_id"),
        (
            _with(
                CART,
                audience={
                    "kind": "rules",
                    "rules": {"include": [[{"type": "event", "event": "x", "op": "??"}]]},
                },
            ),
            "audience.rules.include[0][0].op",
        ),
        (_with(CART, surprise=True), "surprise"),
        (_with(DIGEST, schedule_kind=...), "schedule_kind"),
        (_with(DIGEST, send_time=...), "send_time"),
        (_with(DIGEST, send_time="25:00"), "send_time"),
        (_with(DIGEST, send_time="9am"), "send_time"),
        (_with(DIGEST, weekdays=[7]), "weekdays[0]"),
        (_with(DIGEST, weekdays=[]), "weekdays"),
        (_with(DIGEST, weekdays=[True]), "weekdays[0]"),
        (_with(DIGEST, schedule_kind="monthly", weekdays=..., month_days=[0]), "month_days[0]"),
        (_with(DIGEST, schedule_kind="monthly", weekdays=..., month_days=[32]), "month_days[0]"),
        (_with(DIGEST, schedule_kind="monthly", month_days=[1]), "weekdays"),
        (_with(DIGEST, schedule_kind="once", weekdays=...), "send_date"),
        (_with(DIGEST, schedule_kind="once", weekdays=..., send_date="2026-02-30"), "send_date"),
        (_with(DIGEST, schedule_kind="annually", weekdays=..., send_date="9999-01-01"), "send_date"),
        (_with(DIGEST, zone="Europe/Istanbul"), "zone"),
        (_with(DIGEST, zone_mode="global", zone="Mars/Olympus"), "zone"),
        (_with(DIGEST, trigger_event="x"), "trigger_event"),
        (_with(DIGEST, content_mode="ab_test"), "content_mode"),
        (_with(DIGEST, ab_test={"test_percent": 10}), "ab_test"),
    ],
)
def test_a_bad_field_is_a_400_naming_its_path_and_nothing_is_stored(server, body, field):
    # json.dumps escapes a lone surrogate as \\ud800, as a hostile client would send it.
    response = server.post("/api/v1/campaigns", json.dumps(body), content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field, response.json()
    assert not Campaign.objects.exists()


def test_a_bad_patch_is_a_400_and_leaves_the_campaign_as_it_was(server):
    pk = create(server, CART)["id"]

    response = server.patch(f"/api/v1/campaigns/{pk}", {"delay_seconds": 0}, format="json")

    assert response.status_code == 400 and response.json()["field"] == "cancel_event"
    assert Campaign.objects.get().delay_seconds == 120


def test_a_body_that_is_not_an_object_is_a_400(server):
    assert server.post("/api/v1/campaigns", [1], format="json").status_code == 400


def test_a_scheduled_ab_test_keeps_its_settings(server):
    body = create(
        server,
        _with(
            DIGEST,
            name="A/B",
            content_mode="ab_test",
            ab_test={"test_percent": 10, "wait_seconds": 3600},
            content={"variants": [{"title": "A", "body": "a"}, {"title": "B", "body": "b"}]},
        ),
    )

    assert body["content_mode"] == "ab_test" and body["ab_test"]["test_percent"] == 10


def test_stats_show_counts_and_a_health_that_says_too_little_data(server):
    pk = create(server, CART)["id"]

    stats = server.get(f"/api/v1/campaigns/{pk}/stats").json()

    assert stats["users_sent"] == 0 and stats["skipped"] == {} and stats["per_run"] == []
    assert stats["health"]["score"] is None and stats["health"]["band"] == "Too little data"


def test_the_list_filters_by_status_and_kind(server):
    cart = create(server, CART)["id"]
    create(server, DIGEST)
    server.post(f"/api/v1/campaigns/{cart}/activate")

    active = server.get("/api/v1/campaigns", {"status": "active"}).json()
    scheduled = server.get("/api/v1/campaigns", {"kind": "scheduled"}).json()

    assert [c["id"] for c in active["results"]] == [cart]
    assert [c["name"] for c in scheduled["results"]] == ["Daily digest"]
    refused = server.get("/api/v1/campaigns", {"status": "sleeping"})
    assert refused.status_code == 400 and refused.json()["field"] == "status"
