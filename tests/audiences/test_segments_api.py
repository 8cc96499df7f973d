"""/api/v1/segments: server keys, tenant-scoped CRUD, sizes, and rule errors that name their path."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audiences.models import Segment
from devices.models import AppUser, Event
from tenants.models import ApiKey, Tenant

BOUGHT = {
    "include": [
        [
            {
                "type": "event",
                "event": "purchase",
                "op": "did",
                "within_days": 14,
                "params": [{"param": "amount", "op": ">", "value": 50}],
            }
        ]
    ]
}


def buy(user: AppUser, amount, *, days_ago=1, n=0):
    Event.objects.create(
        tenant=user.tenant,
        user=user,
        name="purchase",
        params={"amount": amount},
        occurred_at=timezone.now() - timedelta(days=days_ago),
        session_id="s",
        fingerprint=f"{user.pk}-{n}-{amount}",
    )


def test_a_segment_is_created_read_listed_changed_and_deleted(server):
    created = server.post("/api/v1/segments", {"name": "Big spenders", "rules": BOUGHT}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["rules"]["include"][0][0]["params"] == [{"param": "amount", "op": ">", "value": 50}]
    assert body["rules"]["version"] == 1 and body["rules"]["exclude"] == []

    assert server.get(f"/api/v1/segments/{body['id']}").json()["name"] == "Big spenders"
    listed = server.get("/api/v1/segments").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]

    changed = server.patch(f"/api/v1/segments/{body['id']}", {"description": "over 50"}, format="json")
    assert changed.status_code == 200
    assert Segment.objects.get().description == "over 50"

    assert server.delete(f"/api/v1/segments/{body['id']}").status_code == 204
    assert not Segment.objects.exists()


def test_segments_are_listed_in_pages(server):
    for name in "cab":
        server.post("/api/v1/segments", {"name": name, "rules": {}}, format="json")

    body = server.get("/api/v1/segments?page_size=2").json()

    assert body["count"] == 3 and [s["name"] for s in body["results"]] == ["a", "b"] and body["next"]
    assert server.get("/api/v1/segments?page=x").status_code == 400


@pytest.mark.parametrize(
    ("rules", "field", "words"),
    [
        (
            {
                "include": [
                    [
                        BOUGHT["include"][0][0],
                        {
                            "type": "event",
                            "event": "x",
                            "op": "did",
                            "params": [{"param": "a", "op": "~", "value": 1}],
                        },
                    ]
                ]
            },
            "rules.include[0][1].params[0].op",
            'unknown operator "~"',
        ),
        (
            {
                "include": [
                    [
                        {
                            "type": "event",
                            "event": "x",
                            "op": "did",
                            "params": [{"param": "a", "op": ">", "value": [1]}],
                        }
                    ]
                ]
            },
            "rules.include[0][0].params[0].value",
            "not a list",
        ),
        (
            {
                "include": [
                    [
                        {
                            "type": "event",
                            "event": "x",
                            "op": "did",
                            "params": [{"param": "a", "op": "contains", "value": 5}],
                        }
                    ]
                ]
            },
            "rules.include[0][0].params[0].value",
            "compares strings, not a number",
        ),
        (
            {"include": [[{"type": "event", "event": "x", "op": "did", "within_days": 400}]]},
            "rules.include[0][0].within_days",
            "longer than the 180 days",
        ),
        ({"include": [[]]}, "rules.include[0]", "empty group"),
        (
            {
                "exclude": [
                    [{"type": "property", "property": "last_seen", "op": "before", "value": "2025-13-01"}]
                ]
            },
            "rules.exclude[0][0].value",
            "is not a date",
        ),
        (
            {"include": [[{"type": "property", "property": "app_user_id", "op": "in", "value": ["u"]}]] * 21},
            "rules",
            "too many groups",
        ),
        (
            {"include": [[{"type": "event_count", "event": "x", "op": ">=", "value": "three"}]]},
            "rules.include[0][0].value",
            "whole number",
        ),
        ({"include": [[{"type": "magic"}]]}, "rules.include[0][0].type", "unknown rule type"),
        ({"version": 2}, "rules.version", "unknown version"),
        ([], "rules", "must be a JSON object"),
    ],
)
def test_bad_rules_are_a_400_naming_the_path_and_nothing_is_stored(server, rules, field, words):
    # json.dumps escapes a lone surrogate as \ud800, as a hostile client would send it.
    response = server.post(
        "/api/v1/segments", json.dumps({"name": "x", "rules": rules}), content_type="application/json"
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_rules"
    assert body["field"] == field
    assert words in body["detail"] and body["detail"].startswith(field)
    assert not Segment.objects.exists()
    again = server.post(
        "/api/v1/segments/count", json.dumps({"rules": rules}), content_type="application/json"
    )
    assert again.json()["field"] == field


def test_a_lone_surrogate_in_the_rules_is_refused_before_anything_reads_them(server):
    # The API's JSON parser refuses it for every body (api.errors), naming the top-level field.
    rules = {"include": [[{"type": "property", "property": "language", "op": "in", "value": ["\ud800"]}]]}

    response = server.post(
        "/api/v1/segments", json.dumps({"name": "x", "rules": rules}), content_type="application/json"
    )

    assert response.status_code == 400 and response.json()["field"] == "rules"
    assert not Segment.objects.exists()


def test_too_many_rules_are_refused(server):
    group = [{"type": "property", "property": "anonymous", "op": "=", "value": False}] * 51

    response = server.post("/api/v1/segments", {"name": "x", "rules": {"include": [group]}}, format="json")

    assert response.status_code == 400 and response.json()["field"] == "rules.include[0][50]"


def test_a_second_segment_with_the_same_name_is_a_409(server):
    server.post("/api/v1/segments", {"name": "dup", "rules": {}}, format="json")

    response = server.post("/api/v1/segments", {"name": "dup", "rules": {}}, format="json")

    assert response.status_code == 409 and response.json()["error"] == "duplicate_name"


def test_counts_are_users_and_devices_that_allow_pushes(server, tenant, make_device):
    make_device("a1", user="ann")
    make_device("a2", user="ann", permission=False)
    make_device("b1", user="bob")
    make_device("c1", user="cem")
    buy(AppUser.objects.get(app_user_id="ann"), 70)
    buy(AppUser.objects.get(app_user_id="bob"), 30)
    buy(AppUser.objects.get(app_user_id="cem"), 90, days_ago=20)
    segment = server.post("/api/v1/segments", {"name": "s", "rules": BOUGHT}, format="json").json()

    assert server.get(f"/api/v1/segments/{segment['id']}/count").json() == {"users": 1, "devices": 1}
    adhoc = {
        "include": [[{"type": "event", "event": "purchase", "op": "did"}]],
        "exclude": [[{"type": "property", "property": "app_user_id", "op": "in", "value": ["bob"]}]],
    }
    assert server.post("/api/v1/segments/count", {"rules": adhoc}, format="json").json() == {
        "users": 2,
        "devices": 2,
    }
    assert server.post("/api/v1/segments/count", {"rules": {}}, format="json").json() == {
        "users": 3,
        "devices": 3,
    }


def test_another_tenants_segment_is_a_404_everywhere(server, tenant):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    foreign = Segment.objects.create(tenant=other, name="theirs")

    for response in (
        server.get(f"/api/v1/segments/{foreign.pk}"),
        server.get(f"/api/v1/segments/{foreign.pk}/count"),
        server.patch(f"/api/v1/segments/{foreign.pk}", {"name": "mine"}, format="json"),
        server.delete(f"/api/v1/segments/{foreign.pk}"),
    ):
        assert response.status_code == 404
    assert server.get("/api/v1/segments").json()["count"] == 0
    assert Segment.objects.get(pk=foreign.pk).name == "theirs"


def test_an_app_key_gets_403_on_segments(tenant, app_key):
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=app_key)

    assert client.get("/api/v1/segments").status_code == 403
    assert client.post("/api/v1/segments/count", {"rules": {}}, format="json").status_code == 403


def test_counts_never_include_another_tenants_users(server, tenant):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    buy(AppUser.objects.create(tenant=other, app_user_id="x"), 99)
    ApiKey.generate(tenant=other, name="k", kind=ApiKey.Kind.SERVER)

    assert server.post("/api/v1/segments/count", {"rules": BOUGHT}, format="json").json()["users"] == 0


@pytest.mark.parametrize("value", [10**400, -(10**400), 10**16])
def test_a_param_number_out_of_range_is_refused_however_large(server, value):
    rules = json.loads(json.dumps(BOUGHT))
    rules["include"][0][0]["params"][0]["value"] = value

    response = server.post(
        "/api/v1/segments", json.dumps({"name": "x", "rules": rules}), content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["field"] == "rules.include[0][0].params[0].value"
    assert not Segment.objects.exists()
