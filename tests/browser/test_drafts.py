"""In a browser: save a draft from the composer, come back to it, edit it and send it."""

import pytest
from django.contrib.auth.models import User

from messaging.models import Message
from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_an_editor_saves_a_draft_then_edits_and_sends_it(open_page, tenant, viewport):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    make_device(tenant, "browser-token-draft-" + "k" * 30)
    page = open_page(viewport) if viewport else open_page()
    log_in(page, "eddie")
    page.goto("/admin/messaging/message/compose/")
    page.fill("#id_title", "Black Friday")
    page.fill("#id_body", "Everything 40 % off.")

    page.click("#hd-save-draft")

    page.wait_for_url("**/admin/messaging/message/*/change/")
    page.locator(".messagelist", has_text="Saved the draft").wait_for()
    message = Message.objects.get()
    assert message.status == Message.Status.DRAFT
    screenshot(page, "draft")

    page.click("#hd-edit-draft")
    page.wait_for_url(f"**/compose/?draft={message.pk}")
    assert page.input_value("#id_title") == "Black Friday"
    page.fill("#id_title", "Black Friday starts now")
    screenshot(page, "draft-edit")
    page.click("#hd-send")
    page.locator("#hd-confirm-dialog").wait_for(state="visible")
    page.click("#hd-dialog-confirm")
    page.wait_for_url(f"**/admin/messaging/message/{message.pk}/change/")

    message.refresh_from_db()
    assert Message.objects.count() == 1
    assert message.title == "Black Friday starts now" and message.status != Message.Status.DRAFT
