"""CSV exports of a message's deliveries and of a filtered user list, from the API and the admin."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from devices.models import AppUser, Device
from messaging.models import Delivery
from tenants.models import ApiKey, Tenant
from tests.staff import make_delivery, make_device, make_message

pytest_plugins = ["tests.staff_fixtures"]


@pytest.fixture
def server(client, server_key):
    client.credentials(HTTP_X_SERVER_KEY=server_key)
    return client


def rows_of(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def sent_message(tenant):
    now = timezone.now()
    message = make_message(tenant, targeted_count=3, sent_count=2, failed_count=1)
    make_delivery(
        message, make_device(tenant, "token-aaaaaaaaaaaa-one", user="ada"), sent_at=now, opened_at=now
    )
    make_delivery(
        message,
        make_device(tenant, "token-bbbbbbbbbbbb-two", user='=HYPERLINK("http://x")'),
        status="failed",
        error_code="UNREGISTERED",
        error_detail="-1+1 Requested entity was not found.",
    )
    make_delivery(message, None, status="sent", sent_at=now)  # its device was removed since
    return message


def test_it_exports_a_messages_deliveries_as_csv(server, sent_message):
    rows = rows_of(server.get(f"/api/v1/messages/{sent_message.pk}/deliveries.csv"))

    assert [(r["app_user_id"], r["status"], r["error_code"], r["token_suffix"]) for r in rows] == [
        ("ada", "sent", "", "aaaaaaaa-one"),
        ('\'=HYPERLINK("http://x")', "failed", "UNREGISTERED", "bbbbbbbb-two"),
        ("", "sent", "", ""),
    ]
    assert rows[1]["error_detail"] == "'-1+1 Requested entity was not found."
    assert rows[0]["opened_at"] and rows[0]["sent_at"].startswith(str(timezone.now().year))
    assert rows[1]["platform"] == "android" and rows[1]["opened_at"] == ""


def test_a_large_export_is_streamed_in_chunks(server, tenant):
    message = make_message(tenant)
    user = AppUser.objects.create(tenant=tenant, app_user_id="many")
    devices = Device.objects.bulk_create(
        Device(tenant=tenant, user=user, token=f"t{i}", token_hash=f"h{i}", platform="web")
        for i in range(3000)
    )
    Delivery.objects.bulk_create(
        Delivery(message=message, device=d, tracking_token=f"k{d.pk}") for d in devices
    )

    response = server.get(f"/api/v1/messages/{message.pk}/deliveries.csv")

    chunks = list(response.streaming_content)
    assert len(chunks) >= 6  # 500 rows a chunk, never the whole file at once
    assert b"".join(chunks).count(b"\n") == 3001


def test_a_client_asking_for_csv_gets_csv_and_errors_stay_json(server, sent_message):
    assert (
        server.get(f"/api/v1/messages/{sent_message.pk}/deliveries.csv", HTTP_ACCEPT="text/csv").status_code
        == 200
    )
    missing = server.get("/api/v1/messages/999999/deliveries.csv", HTTP_ACCEPT="text/csv")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_another_tenants_message_is_a_404(client, sent_message):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    client.credentials(HTTP_X_SERVER_KEY=ApiKey.generate(tenant=other, name="s", kind="server")[1])

    assert client.get(f"/api/v1/messages/{sent_message.pk}/deliveries.csv").status_code == 404
    assert rows_of(client.get("/api/v1/users.csv")) == []


def test_an_app_key_cannot_export(client, app_key, sent_message):
    client.credentials(HTTP_X_SERVER_KEY=app_key)

    assert client.get(f"/api/v1/messages/{sent_message.pk}/deliveries.csv").status_code == 403
    assert client.get("/api/v1/users.csv").status_code == 403


@pytest.fixture
def users(tenant):
    now = timezone.now()
    make_device(tenant, "t1", user="tr-android", country="TR")
    make_device(tenant, "t2", user="de-ios", platform="ios", country="DE", language="de")
    make_device(
        tenant,
        "t3",
        user="de-ios",
        platform="android",
        country="DE",
        language="de",
        is_active=False,
        deactivated_at=now,
    )
    AppUser.objects.create(
        tenant=tenant,
        app_user_id="anon_1",
        is_anonymous=True,
        country="TR",
        last_seen_at=now - timedelta(days=40),
    )
    other = Tenant.objects.create(name="Other", tenant_id="other")
    AppUser.objects.create(tenant=other, app_user_id="theirs", country="TR")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["tr-android", "de-ios", "anon_1"]),
        ({"country": "TR"}, ["tr-android", "anon_1"]),
        ({"platform": "ios"}, ["de-ios"]),
        ({"platform": "android", "country": "DE"}, ["de-ios"]),
        ({"anonymous": "true"}, ["anon_1"]),
        ({"anonymous": "false", "language": "de"}, ["de-ios"]),
        ({"seen_before": (timezone.now() - timedelta(days=30)).isoformat()}, ["anon_1"]),
        ({"seen_after": (timezone.now() - timedelta(days=30)).isoformat()}, ["tr-android", "de-ios"]),
    ],
)
def test_it_exports_the_users_matching_a_filter(server, users, query, expected):
    rows = rows_of(server.get("/api/v1/users.csv", query))

    assert [r["app_user_id"] for r in rows] == expected


def test_the_user_export_counts_each_users_devices(server, users):
    rows = {r["app_user_id"]: r for r in rows_of(server.get("/api/v1/users.csv"))}

    assert (rows["de-ios"]["devices"], rows["de-ios"]["targetable_devices"]) == ("2", "1")
    assert (rows["anon_1"]["devices"], rows["anon_1"]["is_anonymous"]) == ("0", "true")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"country": "XX"}, "country"),
        ({"anonymous": "yes"}, "anonymous"),
        ({"seen_after": "yesterday"}, "seen_after"),
        # Herald bounds offsets to ±14:00, as every date it takes.
        ({"seen_after": "2000-01-01T00:00:00+19:33"}, "seen_after"),
        ({"contry": "TR"}, "contry"),
    ],
)
def test_a_malformed_or_unknown_filter_is_a_400(server, users, query, field):
    response = server.get("/api/v1/users.csv", query)

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_the_message_page_exports_its_deliveries(viewer, sent_message):
    page = viewer.get(f"/admin/messaging/message/{sent_message.pk}/change/").content.decode()
    assert f"/admin/messaging/message/{sent_message.pk}/deliveries.csv" in page

    rows = rows_of(viewer.get(f"/admin/messaging/message/{sent_message.pk}/deliveries.csv"))

    assert len(rows) == 3


def test_another_tenants_message_cannot_be_exported_from_the_admin(outsider, sent_message):
    assert outsider.get(f"/admin/messaging/message/{sent_message.pk}/deliveries.csv").status_code == 404


def test_the_user_list_exports_what_its_filters_show(viewer, users):
    page = viewer.get("/admin/devices/appuser/", {"country": "DE"}).content.decode()
    assert "/admin/devices/appuser/export.csv?country=DE" in page

    rows = rows_of(viewer.get("/admin/devices/appuser/export.csv", {"country": "DE"}))

    assert [r["app_user_id"] for r in rows] == ["de-ios"]
    everyone = rows_of(viewer.get("/admin/devices/appuser/export.csv"))
    assert "theirs" not in {r["app_user_id"] for r in everyone}
