""" "Check now" on a Firebase credential's page checks it, for a tenant admin and an editor."""

import pytest
from django.contrib.auth.models import User

from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("role", ["admin", "editor"])
def test_check_now_on_the_credential_page_checks_the_credential(open_page, tenant, sandbox_credential, role):
    user = User.objects.create_user("ada", "ada@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=role)
    page = open_page()
    log_in(page, "ada")
    page.goto(f"/admin/tenants/firebasecredential/{sandbox_credential.pk}/change/")

    page.click("#hd-check-credential")

    page.locator(".messagelist .success", has_text="Works: got an access token").wait_for()
    assert "No action selected" not in page.inner_text("body")
    sandbox_credential.refresh_from_db()
    assert sandbox_credential.last_check_ok is True
    page.locator(".hd-credential-summary .hd-chip-ok", has_text="works").wait_for()
    assert page.locator("select[name='CHANGE_FORM-action']").count() == 0  # one control, the button
    screenshot(page, f"credential-checked-{role}")
    if role == "admin":
        page.set_viewport_size(PHONE)
        screenshot(page, "credential-checked")
