"""The message list, the message page with its live progress, cancelling and sending drafts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Delivery, Message
from tests.staff import make_delivery, make_device, make_message

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant


def page_of(message, suffix="change/"):
    return f"/admin/messaging/message/{message.pk}/{suffix}"


@pytest.fixture
def sent_message(tenant):
    """A finished message: 3 sent (1 opened), 2 failed UNREGISTERED, 1 failed QUOTA_EXCEEDED."""
    message = make_message(
        tenant,
        title="Flash sale",
        status=Message.Status.COMPLETED_WITH_FAILURES,
        targeted_count=6,
        sent_count=3,
        failed_count=3,
        opened_count=1,
    )
    for i in range(6):
        device = make_device(tenant, f"tok-{i}-" + "x" * 20, user=f"user_{i}")
        if i < 3:
            make_delivery(message, device, opened_at=timezone.now() if i == 0 else None)
        else:
            make_delivery(
                message,
                device,
                status=Delivery.Status.FAILED,
                attempts=1,
                error_code="QUOTA_EXCEEDED" if i == 5 else "UNREGISTERED",
                error_detail="Requested entity was not found.",
            )
    return message


def test_the_message_list_shows_only_the_users_tenants(viewer, tenant, other_tenant):
    make_message(tenant, title="Acme news")
    make_message(other_tenant, title="Globex news")

    page = viewer.get("/admin/messaging/message/").content.decode()

    assert "Acme news" in page and "Globex news" not in page


def test_the_message_list_shows_status_progress_and_opens(viewer, sent_message):
    page = viewer.get("/admin/messaging/message/").content.decode()

    assert "Completed with failures" in page and "3 / 6" in page and "33 %" in page


def test_an_editor_is_offered_the_composer_and_a_viewer_is_not(editor, viewer):
    assert "Compose a push" in editor.get("/admin/messaging/message/").content.decode()
    assert "Compose a push" not in viewer.get("/admin/messaging/message/").content.decode()


def test_adding_a_message_leads_to_the_composer(editor, viewer):
    response = editor.get("/admin/messaging/message/add/")

    assert response.status_code == 302 and response["Location"].endswith("/compose/")
    assert viewer.get("/admin/messaging/message/add/").status_code == 403


def test_another_tenants_message_is_a_404_everywhere(tenant_admin, other_tenant):
    theirs = make_message(
        other_tenant, status=Message.Status.SCHEDULED, schedule_at=timezone.now() + timedelta(days=1)
    )

    for suffix in ["change/", "progress/", "cancel/", "send/", "history/", "delete/"]:
        assert tenant_admin.get(page_of(theirs, suffix)).status_code == 404, suffix
    assert tenant_admin.post(page_of(theirs, "cancel/")).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Message.Status.SCHEDULED


def test_the_message_page_shows_the_outcome_by_error_code_and_the_affected_devices(viewer, sent_message):
    page = viewer.get(page_of(sent_message)).content.decode()

    assert "Outcome" in page and "100 %" in page
    assert "UNREGISTERED" in page and "The app was uninstalled" in page and "QUOTA_EXCEEDED" in page
    assert "Affected devices" in page and "user_3" in page and "user_5" in page and "user_0" not in page
    assert "33.3 %" in page  # open rate: 1 of 3 sent


def test_the_affected_devices_can_be_narrowed_to_one_error(viewer, sent_message):
    page = viewer.get(page_of(sent_message) + "?code=QUOTA_EXCEEDED").content.decode()

    assert "user_5" in page and "user_3" not in page


def test_the_progress_endpoint_reports_sent_failed_and_pending_of_targeted(viewer, tenant):
    message = make_message(
        tenant,
        status=Message.Status.SENDING,
        targeted_count=200,
        sent_count=90,
        failed_count=10,
        opened_count=9,
    )

    progress = viewer.get(page_of(message, "progress/")).json()

    assert progress == {
        "status": "sending",
        "status_label": "Sending",
        "final": False,
        "targeted": 200,
        "sent": 90,
        "validated": 0,
        "failed": 10,
        "pending": 100,
        "opened": 9,
        "percent_done": 50.0,
        "percent_sent": 45.0,
        "percent_failed": 5.0,
        "open_rate": 10.0,
        "breakdown": [],
    }


def test_the_progress_endpoint_counts_failures_by_fcm_error_for_the_live_panel(viewer, sent_message):
    progress = viewer.get(page_of(sent_message, "progress/")).json()

    assert [(row["code"], row["count"]) for row in progress["breakdown"]] == [
        ("UNREGISTERED", 2),
        ("QUOTA_EXCEEDED", 1),
    ]
    assert "uninstalled" in progress["breakdown"][0]["explanation"]


def test_a_sending_message_page_polls_for_progress(viewer, tenant):
    message = make_message(tenant, status=Message.Status.SENDING, targeted_count=10, sent_count=2)

    page = viewer.get(page_of(message)).content.decode()

    assert 'data-final="false"' in page and page_of(message, "progress/") in page
    assert "herald/message.js" in page
    assert 'aria-valuenow="20"' in page


def test_a_viewer_cannot_cancel_a_message(viewer, tenant):
    message = make_message(tenant, status=Message.Status.SENDING)

    assert "Cancel message" not in viewer.get(page_of(message)).content.decode()
    assert viewer.get(page_of(message, "cancel/")).status_code == 403
    assert viewer.post(page_of(message, "cancel/")).status_code == 403
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING


def test_cancelling_asks_first_then_cancels(editor, tenant):
    message = make_message(
        tenant, status=Message.Status.SCHEDULED, schedule_at=timezone.now() + timedelta(days=1)
    )

    question = editor.get(page_of(message, "cancel/"))
    message.refresh_from_db()
    assert b"Cancel this message?" in question.content and message.status == Message.Status.SCHEDULED

    response = editor.post(page_of(message, "cancel/"), follow=True)

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert b"Cancelled" in response.content


def test_a_finished_message_cannot_be_cancelled(editor, sent_message):
    assert "Cancel message" not in editor.get(page_of(sent_message)).content.decode()

    response = editor.post(page_of(sent_message, "cancel/"), follow=True)

    assert b"cannot be cancelled" in response.content
    sent_message.refresh_from_db()
    assert sent_message.status == Message.Status.COMPLETED_WITH_FAILURES


def test_an_editor_sends_a_draft_after_confirming(editor, tenant):
    make_device(tenant, "tok-draft-" + "d" * 20)
    draft = make_message(tenant, status=Message.Status.DRAFT)

    assert b"Send this draft to 1 device now?" in editor.get(page_of(draft, "send/")).content
    editor.post(page_of(draft, "send/"))

    draft.refresh_from_db()
    assert draft.status == Message.Status.SENDING


def test_a_viewer_cannot_send_a_draft(viewer, tenant):
    draft = make_message(tenant, status=Message.Status.DRAFT)

    assert viewer.post(page_of(draft, "send/")).status_code == 403
    draft.refresh_from_db()
    assert draft.status == Message.Status.DRAFT


def test_messages_cannot_be_edited_or_deleted_by_tenant_staff(tenant_admin, sent_message):
    tenant_admin.post(page_of(sent_message), {"title": "Changed"})

    sent_message.refresh_from_db()
    assert sent_message.title == "Flash sale"
    assert tenant_admin.post(page_of(sent_message, "delete/"), {"post": "yes"}).status_code == 403


def test_a_superuser_sees_every_tenants_messages(superuser, tenant, other_tenant):
    make_message(tenant, title="Acme news")
    make_message(other_tenant, title="Globex news")

    page = superuser.get("/admin/messaging/message/").content.decode()

    assert "Acme news" in page and "Globex news" in page


def test_the_list_leaves_developer_pushes_out_by_default_and_shows_them_on_request(viewer, tenant):
    make_message(tenant, title="Weekend sale", source=Message.Source.ADMIN)
    make_message(tenant, title="From the back end", source=Message.Source.API)
    for i in range(30):  # a back end's transactional pushes, one every few seconds
        make_message(tenant, title=f"Your order {i} has shipped", source=Message.Source.DEVELOPER_PUSH)

    default = viewer.get("/admin/messaging/message/").content.decode()
    transactional = viewer.get("/admin/messaging/message/?source=developer_push").content.decode()
    everything = viewer.get("/admin/messaging/message/?source=all").content.decode()

    assert "Weekend sale" in default and "From the back end" in default
    assert "has shipped" not in default
    assert "All but /developer/push" in default and "?source=developer_push" in default
    assert transactional.count("has shipped") == 30 and "Weekend sale" not in transactional
    assert "Weekend sale" in everything and everything.count("has shipped") == 30
