"""A dry run validates with FCM and delivers nothing: its counts say "validated", never "sent"."""

import pytest

from messaging.models import Message
from tests.staff import signed_in, staff_user


@pytest.fixture
def dry_run(sandbox, server, make_device):
    make_device("tok-a")
    make_device("tok-b", user="u2")
    make_device("sandbox-invalid-1", user="u3")
    response = server.post(
        "/api/v1/messages", {"title": "Sale", "body": "50% off", "dry_run": True}, format="json"
    )
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


def test_the_api_counts_a_dry_runs_validations_apart_from_sends(server, dry_run):
    body = server.get(f"/api/v1/messages/{dry_run.pk}").json()

    assert body["counts"] == {
        "targeted": 3,
        "sent": 0,
        "validated": 2,
        "failed": 1,
        "pending": 0,
        "opened": 0,
    }
    assert body["status"] == "completed_with_failures"
    assert body["open_rate"] is None


def test_a_dry_run_whose_every_message_fcm_accepts_completes(sandbox, server, make_device):
    make_device("tok-a")

    response = server.post("/api/v1/messages", {"title": "Sale", "body": "x", "dry_run": True}, format="json")

    message = Message.objects.get(pk=response.json()["id"])
    assert (message.status, message.sent_count, message.validated_count) == ("completed", 0, 1)


def test_the_admin_shows_a_dry_run_as_validated_not_sent(tenant, dry_run):
    admin = signed_in(staff_user("root", superuser=True))

    page = admin.get(f"/admin/messaging/message/{dry_run.pk}/change/").content.decode()
    listing = admin.get("/admin/messaging/message/").content.decode()
    progress = admin.get(f"/admin/messaging/message/{dry_run.pk}/progress/").json()

    assert "<dt>Validated</dt>" in page and "<dt>Sent</dt>" not in page
    assert "2 validated" in listing and "validated, dry run" in listing
    assert (progress["sent"], progress["validated"]) == (0, 2)


def test_the_dashboard_counts_no_delivery_for_a_dry_run(tenant, dry_run):
    from messaging.selectors import dashboard

    board = dashboard(tenant_ids=[tenant.pk])
    page = signed_in(staff_user("root", superuser=True)).get("/admin/").content.decode()

    assert (board.sent, board.failed, board.validated) == (0, 0, 2)
    assert "2 validated in dry runs" in page and "2 of 3 validated (dry run)" in page
