"""A user's data on request: GET and DELETE /api/v1/users/{id}, and the admin's erase action."""

import pytest
from django.apps import apps
from django.utils import timezone

from devices.models import AppUser, Device, Event, TokenRotation, hash_token
from messaging.models import Delivery, Message
from tenants.models import ApiKey, Tenant

pytest_plugins = ["tests.staff_fixtures"]

USER = "erase-me-7f3a"
TOKENS = ["erase-me-token-phone", "erase-me-token-tablet"]
OLD_TOKEN = "erase-me-token-before-rotation"


@pytest.fixture
def people(tenant):
    """The user to erase (two devices, history, events, pushes), a neighbour, and another
    tenant's user with the very same id."""
    now = timezone.now()
    user = AppUser.objects.create(tenant=tenant, app_user_id=USER, country="TR", language="tr")
    phone, tablet = (
        Device.objects.create(tenant=tenant, user=user, token=t, platform="android", push_permission=True)
        for t in TOKENS
    )
    TokenRotation.objects.create(
        device=phone, old_token=OLD_TOKEN, old_token_hash=hash_token(OLD_TOKEN), new_token=TOKENS[0]
    )
    for i in range(3):
        Event.objects.create(
            tenant=tenant,
            user=user,
            device=phone,
            name=f"open-{i}",
            occurred_at=now,
            session_id="s",
            params={"screen": "home"},
            fingerprint=f"f{i}",
        )
    neighbour = AppUser.objects.create(tenant=tenant, app_user_id="neighbour")
    their_phone = Device.objects.create(
        tenant=tenant, user=neighbour, token="neighbour-token", platform="ios", push_permission=True
    )
    Event.objects.create(
        tenant=tenant,
        user=neighbour,
        device=their_phone,
        name="open",
        occurred_at=now,
        session_id="s",
        fingerprint="n1",
    )
    sale = Message.objects.create(
        tenant=tenant,
        title="Sale",
        body="b",
        status="completed_with_failures",
        targeted_count=3,
        sent_count=2,
        failed_count=1,
        opened_count=1,
    )
    Delivery.objects.create(message=sale, device=phone, status="sent", sent_at=now, opened_at=now)
    Delivery.objects.create(message=sale, device=tablet, status="failed", error_code="UNREGISTERED")
    Delivery.objects.create(message=sale, device=their_phone, status="sent", sent_at=now)
    Message.objects.create(
        tenant=tenant,
        title="To two",
        body="b",
        audience="users",
        audience_params={"app_user_ids": [USER, "neighbour"]},
    )
    Message.objects.create(
        tenant=tenant,
        title="By token",
        body="b",
        audience="tokens",
        audience_params={"tokens": [OLD_TOKEN, "neighbour-token"]},
    )
    other = Tenant.objects.create(name="Other", tenant_id="other")
    twin = AppUser.objects.create(tenant=other, app_user_id=USER)
    Device.objects.create(tenant=other, user=twin, token="twin-token", platform="web")
    return {
        "user": user,
        "phone": phone,
        "tablet": tablet,
        "sale": sale,
        "neighbour": neighbour,
        "other": other,
        "twin": twin,
    }


@pytest.fixture
def server(client, server_key):
    client.credentials(HTTP_X_SERVER_KEY=server_key)
    return client


def every_row_mentioning(*needles: str) -> list[str]:
    """Every row of every table that holds one of the needles anywhere: table by table."""
    found = []
    for model in apps.get_models():
        for row in model.objects.values():
            text = str(row)
            for needle in needles:
                if needle in text:
                    found.append(f"{model._meta.db_table} #{row.get('id')}: {needle}")
    return found


def test_it_returns_the_user_their_devices_recent_events_and_pushes(server, people):
    response = server.get(f"/api/v1/users/{USER}")

    assert response.status_code == 200
    body = response.json()
    assert (body["app_user_id"], body["country"], body["event_count"], body["delivery_count"]) == (
        USER,
        "TR",
        3,
        2,
    )
    assert [d["token_suffix"] for d in body["devices"]] == [t[-12:] for t in TOKENS]
    assert [e["name"] for e in body["events"]] == ["open-2", "open-1", "open-0"]
    assert {(d["title"], d["status"]) for d in body["deliveries"]} == {("Sale", "sent"), ("Sale", "failed")}
    assert not any(token in response.content.decode() for token in TOKENS)  # only their last characters


def test_any_id_the_app_may_send_can_be_read_and_deleted(server, tenant):
    AppUser.objects.create(tenant=tenant, app_user_id="line\nbreak / slash ?")

    assert server.get("/api/v1/users/line%0Abreak%20%2F%20slash%20%3F").json()["app_user_id"] == (
        "line\nbreak / slash ?"
    )
    assert server.delete("/api/v1/users/line%0Abreak%20%2F%20slash%20%3F").json()["removed"]["app_users"] == 1


@pytest.mark.parametrize("app_user_id", ["nobody", "a%00b", "x" * 300])
def test_an_unknown_user_is_a_404(server, people, app_user_id):
    response = server.get(f"/api/v1/users/{app_user_id}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_another_tenants_user_is_a_404(server, people):
    people["user"].delete()  # the id now lives only in the other tenant

    assert server.get(f"/api/v1/users/{USER}").status_code == 404


def test_an_app_key_may_neither_read_nor_delete_a_user(client, app_key, people):
    client.credentials(HTTP_X_SERVER_KEY=app_key)

    assert client.get(f"/api/v1/users/{USER}").status_code == 403
    assert client.delete(f"/api/v1/users/{USER}").status_code == 403
    assert AppUser.objects.filter(pk=people["user"].pk).exists()


def test_deleting_a_user_leaves_no_row_of_theirs_behind_in_any_table(server, people):
    assert every_row_mentioning(USER, *TOKENS, OLD_TOKEN)  # the check can see them
    messages_before = list(
        Message.objects.order_by("pk").values(
            "pk", "targeted_count", "sent_count", "failed_count", "opened_count"
        )
    )
    detail_before = server.get(f"/api/v1/messages/{people['sale'].pk}").json()

    response = server.delete(f"/api/v1/users/{USER}")

    assert response.status_code == 200
    assert response.json() == {
        "app_user_id": USER,
        "removed": {
            "app_users": 1,
            "devices": 2,
            "events": 3,
            "token_rotations": 1,
            "deliveries_anonymised": 2,
            "messages_scrubbed": 2,
        },
    }
    # Table by table: nothing names the user or any token of theirs, but the other tenant's
    # user of the same id is untouched.
    assert every_row_mentioning(*TOKENS, OLD_TOKEN) == []
    assert every_row_mentioning(USER) == [f"devices_appuser #{people['twin'].pk}: {USER}"]
    assert not AppUser.objects.filter(pk=people["user"].pk).exists()
    assert not Device.objects.filter(pk__in=[people["phone"].pk, people["tablet"].pk]).exists()
    assert not Event.objects.filter(user_id=people["user"].pk).exists()
    assert not TokenRotation.objects.filter(device_id=people["phone"].pk).exists()
    # The neighbour keeps everything; the message keeps its deliveries (detached) and totals.
    assert Event.objects.filter(user=people["neighbour"]).count() == 1
    assert Delivery.objects.filter(message=people["sale"]).count() == 3
    assert Delivery.objects.filter(message=people["sale"], device__isnull=True).count() == 2
    assert (
        list(
            Message.objects.order_by("pk").values(
                "pk", "targeted_count", "sent_count", "failed_count", "opened_count"
            )
        )
        == messages_before
    )
    detail_after = server.get(f"/api/v1/messages/{people['sale'].pk}").json()
    assert (detail_after["counts"], detail_after["errors"], detail_after["open_rate"]) == (
        detail_before["counts"],
        detail_before["errors"],
        detail_before["open_rate"],
    )
    assert Message.objects.get(title="To two").audience_params == {"app_user_ids": ["neighbour"]}
    assert Message.objects.get(title="By token").audience_params == {"tokens": ["neighbour-token"]}


def test_deleting_a_user_again_succeeds_and_removes_nothing(server, people):
    server.delete(f"/api/v1/users/{USER}")

    response = server.delete(f"/api/v1/users/{USER}")

    assert response.status_code == 200
    assert set(response.json()["removed"].values()) == {0}


def test_deleting_another_tenants_user_removes_nothing(people, client):
    other_key = ApiKey.generate(tenant=people["other"], name="s", kind=ApiKey.Kind.SERVER)[1]
    client.credentials(HTTP_X_SERVER_KEY=other_key)

    response = client.delete("/api/v1/users/neighbour")  # a user of "acme" only

    assert response.status_code == 200
    assert set(response.json()["removed"].values()) == {0}
    assert AppUser.objects.filter(app_user_id="neighbour").exists()


def test_a_tenant_admin_deletes_users_data_from_the_admin_after_confirming(tenant_admin, people):
    changelist = "/admin/devices/appuser/"
    chosen = {"action": "erase_selected", "_selected_action": [people["user"].pk], "index": "0"}

    page = tenant_admin.post(changelist, chosen)

    assert page.status_code == 200
    assert "Delete the data of 1 user?" in page.content.decode()
    assert AppUser.objects.filter(pk=people["user"].pk).exists()

    done = tenant_admin.post(
        changelist,
        {"action": "erase_selected", "_selected_action": [people["user"].pk], "confirmed": "yes"},
        follow=True,
    )

    assert "Deleted 1 app users, 2 devices, 3 events, 1 token rotations" in done.content.decode()
    assert every_row_mentioning(*TOKENS, OLD_TOKEN) == []
    assert not AppUser.objects.filter(pk=people["user"].pk).exists()


def test_an_editor_cannot_delete_users_data_from_the_admin(editor, people):
    editor.post(
        "/admin/devices/appuser/",
        {"action": "erase_selected", "confirmed": "yes", "_selected_action": [people["user"].pk]},
    )

    assert AppUser.objects.filter(pk=people["user"].pk).exists()
