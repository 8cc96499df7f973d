"""In a browser: compose a localized A/B message with the language bar and variant tabs."""

import pytest
from django.contrib.auth.models import User

from messaging.content import variants_of
from messaging.models import AbTest, Message
from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_an_editor_writes_a_localized_ab_message_and_saves_it(open_page, tenant, viewport):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    make_device(tenant, "browser-token-ab-" + "k" * 30)
    page = open_page(viewport) if viewport else open_page()
    log_in(page, "eddie")
    page.goto("/admin/messaging/message/compose/")
    page.fill("#id_title", "Weekend sale")
    page.fill("#id_body", "Everything 30 % off.")

    page.select_option("#hd-add-language", "tr")
    page.locator("#hd-content-warning", has_text="tr is empty").wait_for()
    page.fill("#id_title", "Hafta sonu indirimi ve çok daha fazlası burada")
    page.fill("#id_body", "Her şey %30 indirimli, pazara kadar, kaçırmayın lütfen!")
    page.locator("#hd-content-warning", has_text="over 50 % longer").wait_for()
    page.fill("#id_title", "Hafta sonu indirimi")
    page.fill("#id_body", "Her şey %30 indirimli.")
    assert page.locator("[data-bind=title]").first.text_content() == "Hafta sonu indirimi"

    page.click("#hd-add-variant")
    page.fill("#id_title", "Son 48 saat")
    page.fill("#id_body", "%30 indirim bitiyor.")
    page.click("[data-language='']")
    page.fill("#id_title", "48 hours left")
    page.fill("#id_body", "30 % off ends soon.")
    page.check("input[name=hd_variant_mode][value=ab_test]")
    page.fill("#hd-ab-percent", "30")
    page.fill("#hd-ab-wait", "45")
    page.locator("#hd-ab-fields").scroll_into_view_if_needed()
    screenshot(page, "compose-ab-localized")

    page.click("#hd-save-draft")
    page.wait_for_url("**/admin/messaging/message/*/change/")
    message = Message.objects.get()
    composed = variants_of(message)
    assert [v.content.title for v in composed] == ["Weekend sale", "48 hours left"]
    assert [v.localizations["tr"].title for v in composed] == ["Hafta sonu indirimi", "Son 48 saat"]
    ab = AbTest.objects.get(message=message)
    assert (ab.test_percent, ab.wait_seconds) == (30, 45 * 60)
    screenshot(page, "message-ab-draft")
