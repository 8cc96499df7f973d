"""Hostile values in every kind of campaign field: a 400 naming the field's path, never a
500, and no campaign stored behind it."""

import copy
import json

import pytest

from campaigns.models import Campaign, CampaignVersion

TRIGGERED = {
    "name": "Cart abandoned",
    "kind": "triggered",
    "trigger_event": "cart_add",
    "cooldown": "1d",
    "content": {"variants": [{"title": "Still thinking?", "body": "Your cart misses you"}]},
}
SCHEDULED = {
    "name": "Digest",
    "kind": "scheduled",
    "schedule_kind": "once",
    "send_date": "2030-01-02",
    "send_time": "09:00",
    "zone_mode": "global",
    "zone": "Europe/Istanbul",
    "content": {"variants": [{"title": "Your week", "body": "What happened"}]},
}


def nested(depth):
    value = "x"
    for _ in range(depth):
        value = {"v": value}
    return value


def with_(base, **fields):
    body = copy.deepcopy(base)
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def send(server, method, path, body):
    # As the wire carries it: json.dumps escapes a lone surrogate and writes any integer.
    return getattr(server, method)(path, json.dumps(body), content_type="application/json")


CASES = {
    "nul in the name": (with_(TRIGGERED, name="Cart\x00"), "name"),
    "nul in the trigger event": (with_(TRIGGERED, trigger_event="cart\x00add"), "trigger_event"),
    "nul in a variant title": (
        with_(TRIGGERED, content={"variants": [{"title": "Hi\x00", "body": "b"}]}),
        "content.variants[0].title",
    ),
    "lone surrogate in the name": (with_(TRIGGERED, name="Cart \ud800"), "name"),
    "lone surrogate in a body": (
        with_(TRIGGERED, content={"variants": [{"title": "Hi", "body": "\udfff"}]}),
        "content",  # the whole content is refused before its fields are read
    ),
    "huge delay": (with_(TRIGGERED, delay_seconds=10**30), "delay_seconds"),
    "negative delay": (with_(TRIGGERED, delay_seconds=-1), "delay_seconds"),
    "huge trigger param value": (
        with_(TRIGGERED, trigger_params=[{"param": "value", "op": ">", "value": 10**400}]),
        "trigger_params",
    ),
    "trigger params nested deep": (
        with_(TRIGGERED, trigger_params=[{"param": "value", "op": "=", "value": nested(200)}]),
        "trigger_params",
    ),
    "trigger params as a deep object": (with_(TRIGGERED, trigger_params=nested(200)), "trigger_params"),
    "send date in year 9999": (with_(SCHEDULED, send_date="9999-12-31"), "send_date"),
    "send date in year 1": (with_(SCHEDULED, send_date="0001-01-01"), "send_date"),
    "unknown zone": (with_(SCHEDULED, zone="Mars/Olympus_Mons"), "zone"),
    "zone with a path": (with_(SCHEDULED, zone="../../etc/passwd"), "zone"),
    "zone with a nul": (with_(SCHEDULED, zone="Europe/Istanbul\x00"), "zone"),
    "31 weekdays": (
        with_(SCHEDULED, schedule_kind="weekly", send_date=None, weekdays=list(range(31))),
        "weekdays",
    ),
    "200 month days": (
        with_(SCHEDULED, schedule_kind="monthly", send_date=None, month_days=list(range(1, 201))),
        "month_days",
    ),
    "a huge weekday": (
        with_(SCHEDULED, schedule_kind="weekly", send_date=None, weekdays=[10**30]),
        "weekdays",
    ),
    "send time out of the day": (with_(SCHEDULED, send_time="25:61"), "send_time"),
}


@pytest.mark.parametrize(("body", "field"), CASES.values(), ids=CASES.keys())
def test_a_hostile_campaign_field_is_a_400_naming_it_and_stores_nothing(server, body, field):
    response = send(server, "post", "/api/v1/campaigns", body)

    assert response.status_code == 400, response.content
    assert response.json()["field"].startswith(field), response.json()
    assert not Campaign.objects.exists() and not CampaignVersion.objects.exists()


@pytest.mark.parametrize(("body", "field"), CASES.values(), ids=CASES.keys())
def test_a_hostile_change_is_a_400_naming_it_and_changes_nothing(server, body, field):
    base = SCHEDULED if body["kind"] == "scheduled" else TRIGGERED
    created = server.post("/api/v1/campaigns", base, format="json")
    assert created.status_code == 201, created.content
    before = list(Campaign.objects.values()), list(CampaignVersion.objects.values())

    response = send(server, "patch", f"/api/v1/campaigns/{created.json()['id']}", body)

    assert response.status_code == 400, response.content
    assert response.json()["field"].startswith(field), response.json()
    assert (list(Campaign.objects.values()), list(CampaignVersion.objects.values())) == before
