"""The message page while a message sends: the failures panel moves with the counters, without
a reload."""

import pytest
from django.contrib.auth.models import User

from messaging.models import Delivery, Message
from tenants.models import Membership
from tests.browser.conftest import PASSWORD, log_in, screenshot
from tests.staff import make_delivery, make_device, make_message

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_failures_panel_updates_while_the_message_sends(open_page, tenant):
    user = User.objects.create_user("vera", "vera@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)
    message = make_message(tenant, title="Flash sale", status=Message.Status.SENDING, targeted_count=4)
    devices = [make_device(tenant, f"tok-live-{i}-" + "x" * 20, user=f"user_{i}") for i in range(4)]
    page = open_page()
    log_in(page, "vera")
    page.goto(f"/admin/messaging/message/{message.pk}/change/")
    panel = page.locator("#hd-breakdown")
    panel.locator("text=None so far.").wait_for()
    page.evaluate("window.notReloaded = true")

    for device in devices[:2]:
        make_delivery(message, device, status=Delivery.Status.FAILED, error_code="UNREGISTERED")
    make_delivery(message, devices[2])
    Message.objects.filter(pk=message.pk).update(sent_count=1, failed_count=2)

    page.locator("[data-field=failed]", has_text="2").wait_for()
    panel.locator("tr", has_text="UNREGISTERED").filter(has_text="2").wait_for()
    assert not panel.locator("text=None so far.").is_visible()
    assert page.evaluate("window.notReloaded === true")
    assert panel.locator("a.hd-code").get_attribute("href") == "?code=UNREGISTERED#hd-failures"
    screenshot(page, "message-live-failures")
