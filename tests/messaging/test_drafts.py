"""Drafts: the composer saves one without sending it, and staff edit it and send it later."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Delivery, Message
from tests.staff import make_device, make_message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("immediate_tasks")]
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant
COMPOSE = "/admin/messaging/message/compose/"


def form(tenant, **fields):
    return {
        "tenant": tenant.pk,
        "title": "Black Friday",
        "body": "Everything 40 % off.",
        "data_only": "1",
        "priority": "5",
        "audience": "all",
        "when": "now",
        "schedule_tz": "UTC",
        "ttl_value": "4",
        "ttl_unit": "604800",
        **fields,
    }


@pytest.fixture
def phone(tenant):
    return make_device(tenant, "tok-android-" + "a" * 20)


def test_save_draft_keeps_the_message_without_sending_it(editor, tenant, phone):
    response = editor.post(COMPOSE, form(tenant, _action="draft"))

    message = Message.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{message.pk}/change/")
    assert (message.status, message.created_by.username, message.source) == ("draft", "eddie", "admin")
    assert not Delivery.objects.exists()
    page = editor.get(response["Location"]).content.decode()
    assert "Saved the draft" in page and f"compose/?draft={message.pk}" in page and "Send now…" in page
    listing = editor.get("/admin/messaging/message/?status__exact=draft").content.decode()
    assert "Black Friday" in listing


def test_a_draft_opens_in_the_composer_with_everything_it_had(editor, tenant):
    when = timezone.now() + timedelta(days=3)
    draft = make_message(
        tenant,
        title="Black Friday",
        status=Message.Status.DRAFT,
        click_link="myshop://sale",
        schedule_at=when,
        schedule_tz="Europe/Istanbul",
    )

    page = editor.get(f"{COMPOSE}?draft={draft.pk}").content.decode()

    assert "Edit the draft" in page and f'name="draft" value="{draft.pk}"' in page
    assert 'value="Black Friday"' in page and 'value="myshop://sale"' in page
    local = timezone.localtime(when, timezone.get_fixed_timezone(180)).strftime("%Y-%m-%dT%H:%M")
    assert f'value="{local}"' in page
    assert '<option value="Europe/Istanbul" selected>' in page


def test_saving_an_edited_draft_changes_it_in_place(editor, tenant):
    draft = make_message(tenant, title="Black Friday", status=Message.Status.DRAFT)

    editor.post(COMPOSE, form(tenant, title="Black Friday, extended", draft=draft.pk, _action="draft"))

    draft.refresh_from_db()
    assert Message.objects.count() == 1
    assert (draft.title, draft.status) == ("Black Friday, extended", "draft")


def test_sending_an_edited_draft_sends_that_message(editor, tenant, phone):
    draft = make_message(tenant, title="Black Friday", status=Message.Status.DRAFT)

    response = editor.post(
        COMPOSE, form(tenant, title="Black Friday, now", draft=draft.pk, _action="confirm")
    )

    draft.refresh_from_db()
    assert response["Location"].endswith(f"/{draft.pk}/change/")
    assert Message.objects.count() == 1
    assert (draft.title, draft.status) == ("Black Friday, now", Message.Status.SENDING)


def test_a_draft_is_sent_from_its_page(editor, tenant, phone):
    draft = make_message(tenant, title="Black Friday", status=Message.Status.DRAFT)

    editor.post(f"/admin/messaging/message/{draft.pk}/send/")

    draft.refresh_from_db()
    assert draft.status == Message.Status.SENDING


def test_a_message_that_is_no_longer_a_draft_cannot_be_edited_as_one(editor, tenant):
    sent = make_message(tenant, title="Black Friday", status=Message.Status.COMPLETED)

    opened = editor.get(f"{COMPOSE}?draft={sent.pk}")
    posted = editor.post(COMPOSE, form(tenant, title="Changed", draft=sent.pk, _action="draft"))

    assert opened.status_code == posted.status_code == 302
    sent.refresh_from_db()
    assert sent.title == "Black Friday"


def test_another_tenants_draft_is_a_404_and_a_viewer_saves_none(editor, viewer, tenant, other_tenant):
    foreign = make_message(other_tenant, title="Globex draft", status=Message.Status.DRAFT)

    assert editor.get(f"{COMPOSE}?draft={foreign.pk}").status_code == 404
    assert editor.post(COMPOSE, form(tenant, draft=foreign.pk, _action="draft")).status_code == 404
    assert viewer.post(COMPOSE, form(tenant, _action="draft")).status_code == 403
    assert Message.objects.count() == 1
