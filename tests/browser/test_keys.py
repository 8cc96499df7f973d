"""A tenant admin creates an API key (shown once, copied with a button) and revokes it."""

import pytest
from django.contrib.auth.models import User

from tenants.models import ApiKey, Membership, hash_key
from tests.browser.conftest import DESKTOP, PASSWORD, PHONE, log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_login(tenant):
    user = User.objects.create_user("ada", "ada@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.ADMIN)
    ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)
    return "ada"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_a_tenant_admin_creates_copies_and_revokes_a_key(open_page, admin_login, viewport):
    page = open_page(viewport)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, admin_login)
    page.goto("/admin/tenants/apikey/")
    page.click(".object-tools >> text=Add API key")
    page.fill("#id_name", "Order service")
    page.check("input[name=kind][value=server]")
    screenshot(page, "key-add")
    page.click("input[name=_save]")

    raw = page.inner_text("#hd-new-key").strip()
    key = ApiKey.objects.get(name="Order service")
    assert key.key_hash == hash_key(raw) and raw.startswith("hrld_srv_")
    page.click("[data-copy]")
    page.locator("[data-copy]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == raw
    screenshot(page, "key-created")

    page.click("text=Done, I copied it")
    page.wait_for_url("**/admin/tenants/apikey/")
    assert raw not in page.content()
    row = page.locator("#result_list tr", has_text="Order service")
    assert "active" in row.inner_text()
    screenshot(page, "key-list")
    row.locator("text=Revoke…").click()
    page.locator("text=Every app or server using it gets 401").wait_for()
    screenshot(page, "key-revoke")
    page.click("text=Yes, revoke it")
    page.wait_for_url("**/admin/tenants/apikey/")
    assert "revoked" in page.locator("#result_list tr", has_text="Order service").inner_text()
    key.refresh_from_db()
    assert key.is_revoked
    assert not ApiKey.objects.get(name="iOS app").is_revoked
