"""Herald's own message API: server keys only, tenant-scoped, strict, idempotent."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import Message
from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.usefixtures("immediate_tasks")

LATER = (timezone.now() + timedelta(days=2)).isoformat()


def scheduled(**extra):
    return {"title": "Sale", "body": "50% off today", "schedule_at": LATER, **extra}


def test_creating_a_message_answers_202_with_the_message(server):
    response = server.post("/api/v1/messages", scheduled(data={"deep_link": "app://sale"}), format="json")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "scheduled"
    assert body["data"] == {"deep_link": "app://sale"}
    assert body["counts"] == {
        "targeted": 0,
        "sent": 0,
        "validated": 0,
        "failed": 0,
        "pending": 0,
        "opened": 0,
    }
    assert body["audience"] == {"kind": "all"}
    assert Message.objects.get().pk == body["id"]


def test_a_message_can_be_read_back_by_id(server):
    created = server.post("/api/v1/messages", scheduled(), format="json").json()

    response = server.get(f"/api/v1/messages/{created['id']}")

    assert response.status_code == 200
    assert response.json()["title"] == "Sale"
    assert response.json()["errors"] == {}


def test_messages_are_listed_newest_first_in_pages(server):
    for i in range(3):
        server.post("/api/v1/messages", scheduled(title=f"m{i}"), format="json")

    response = server.get("/api/v1/messages?page_size=2")

    body = response.json()
    assert body["count"] == 3
    assert [m["title"] for m in body["results"]] == ["m2", "m1"]
    assert body["next"]


def test_an_app_key_gets_403_on_the_message_api(tenant, app_key):
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=app_key)

    assert client.get("/api/v1/messages").status_code == 403
    response = client.post("/api/v1/messages", scheduled(), format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert Message.objects.count() == 0


def test_a_bearer_token_works_like_x_server_key(server_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {server_key}")

    assert client.get("/api/v1/messages").status_code == 200


@pytest.mark.parametrize("header", [{}, {"HTTP_X_SERVER_KEY": "hrld_srv_nope"}])
def test_missing_or_wrong_server_keys_get_401(db, header):
    client = APIClient()
    client.credentials(**header)

    response = client.get("/api/v1/messages")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_another_tenants_message_is_a_404(server):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    foreign = Message.objects.create(tenant=other, title="theirs", body="x")

    assert server.get(f"/api/v1/messages/{foreign.pk}").status_code == 404
    assert server.post(f"/api/v1/messages/{foreign.pk}/cancel").status_code == 404
    assert server.get("/api/v1/messages").json()["count"] == 0
    foreign.refresh_from_db()
    assert foreign.status == "draft"


def test_cancelling_a_scheduled_message(server):
    created = server.post("/api/v1/messages", scheduled(), format="json").json()

    response = server.post(f"/api/v1/messages/{created['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"]


def test_cancelling_a_finished_message_is_a_409(server, tenant):
    done = Message.objects.create(tenant=tenant, title="t", body="b", status="completed")

    response = server.post(f"/api/v1/messages/{done.pk}/cancel")

    assert response.status_code == 409
    assert response.json()["error"] == "not_cancellable"


def test_the_same_idempotency_key_returns_the_first_message(server):
    first = server.post("/api/v1/messages", scheduled(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = server.post(
        "/api/v1/messages", scheduled(title="changed"), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["title"] == "Sale"
    assert Message.objects.count() == 1


def test_an_idempotency_key_older_than_24_hours_creates_a_new_message(server):
    first = server.post("/api/v1/messages", scheduled(), format="json", HTTP_IDEMPOTENCY_KEY="k-2").json()
    Message.objects.filter(pk=first["id"]).update(created_at=timezone.now() - timedelta(hours=25))

    again = server.post("/api/v1/messages", scheduled(), format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert again.status_code == 202
    assert again.json()["id"] != first["id"]


def test_idempotency_keys_are_per_tenant(server, db):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    other_client = APIClient()
    other_client.credentials(HTTP_X_SERVER_KEY=ApiKey.generate(tenant=other, name="s", kind="server")[1])

    a = server.post("/api/v1/messages", scheduled(), format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = other_client.post("/api/v1/messages", scheduled(), format="json", HTTP_IDEMPOTENCY_KEY="same")

    assert (a.status_code, b.status_code) == (202, 202)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "no title"}, "title"),
        ({"title": "no body"}, "body"),
        ({"title": "t", "body": "b", "priority": 11}, "priority"),
        ({"title": "t", "body": "b", "priority": "high"}, "priority"),
        ({"title": "t", "body": "b", "data": {"n": 1}}, "data"),
        ({"title": "t", "body": "b", "data": {"google.x": "y"}}, "data"),
        ({"title": "t", "body": "b", "data": ["x"]}, "data"),
        ({"title": "t", "body": "b", "schedule_at": "tomorrow"}, "schedule_at"),
        ({"title": "t", "body": "b", "ttl_seconds": 2419201}, "ttl_seconds"),
        ({"title": "t", "body": "b", "image_url": "not a url"}, "image_url"),
        ({"title": "t", "body": "b", "audience": {"kind": "everyone"}}, "audience"),
        ({"title": "t", "body": "b", "audience": {"kind": "users"}}, "audience"),
        ({"title": "t", "body": "b", "audience": {"kind": "filter", "countries": ["XX"]}}, "audience"),
        ({"title": "t", "body": "b", "audience": {"kind": "topic", "topic": "bad topic!"}}, "audience"),
        ({"title": "t", "body": "b", "titel": "typo"}, "titel"),
        ({"title": "t", "body": "b", "options": {"colour": "red"}}, "options"),
        ({"title": "t", "body": "x" * 1990, "data": {"k": "v" * 2500}}, "body"),
    ],
)
def test_an_invalid_message_is_a_400_naming_the_field(server, body, field):
    response = server.post("/api/v1/messages", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert Message.objects.count() == 0


def test_a_message_scheduled_in_another_time_zone_keeps_its_instant(server):
    year = timezone.now().year + 1
    created = server.post(
        "/api/v1/messages", scheduled(schedule_at=f"{year}-01-01T09:00:00+03:00"), format="json"
    ).json()

    assert Message.objects.get(pk=created["id"]).schedule_at.isoformat() == f"{year}-01-01T06:00:00+00:00"
