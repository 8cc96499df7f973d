"""Every main page, at desktop and phone width: screenshots to look at, and no sideways scrolling."""

import json

import pytest
from django.contrib.auth.models import User

from devices.models import Device
from fcm_sandbox.accounts import create_service_account
from messaging.models import Message
from tenants.credentials import set_credentials
from tenants.models import ApiKey, FirebaseCredential, Membership
from tests.browser.conftest import DESKTOP, PASSWORD, PHONE, log_in, screenshot
from tests.browser.seed import seed_activity

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def month_of_activity(tenant, sandbox_private_key):
    user = User.objects.create_user("ada", "ada@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.ADMIN)
    ApiKey.generate(tenant=tenant, name="Android app", kind=ApiKey.Kind.APP)
    ApiKey.generate(tenant=tenant, name="Backend", kind=ApiKey.Kind.SERVER)[0].revoke()
    seed_activity(tenant)
    account = create_service_account(project_id="acme-push", token_uri="https://oauth2.googleapis.com/token",
                                     client_email="herald@acme-push.iam.gserviceaccount.com",
                                     private_key_pem=sandbox_private_key)
    set_credentials(tenant=tenant, raw=json.dumps(account), uploaded_by=user).record_check(
        ok=False, message="Google refused the key of herald@acme-push.iam.gserviceaccount.com: "
                          "invalid_grant. Generate a new key under Project settings > Service accounts "
                          "and upload it.")
    return tenant


def assert_fits(page):
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_the_main_pages_fit_the_screen(open_page, month_of_activity, viewport):
    page = open_page(viewport)
    log_in(page, "ada")
    message = Message.objects.filter(failed_count__gt=0).first()
    device = Device.objects.filter(rotations__isnull=False, is_active=True).first()
    scheduled = Message.objects.get(status=Message.Status.SCHEDULED)
    pages = {
        "dashboard": "/admin/",
        "messages": "/admin/messaging/message/",
        "message": f"/admin/messaging/message/{message.pk}/change/",
        "scheduled": f"/admin/messaging/message/{scheduled.pk}/change/",
        "compose": "/admin/messaging/message/compose/",
        "devices": "/admin/devices/device/",
        "device": f"/admin/devices/device/{device.pk}/change/",
        "keys": "/admin/tenants/apikey/",
        "new-key": "/admin/tenants/apikey/add/",
        "credential": f"/admin/tenants/firebasecredential/{FirebaseCredential.objects.get().pk}/change/",
        "credentials": "/admin/tenants/firebasecredential/",
    }
    for name, url in pages.items():
        page.goto(url)
        assert page.locator("#content").count(), f"{url} rendered no admin page"
        if name == "compose":
            page.fill("#id_title", "Your order is on its way")
            page.fill("#id_body", "Arriving today between 2 and 4 pm. Tap to follow the courier.")
            page.wait_for_function(  # a function, not a string: the CSP forbids eval
                "() => !document.getElementById('hd-audience-size').textContent.includes('Counting')")
        screenshot(page, name)
        assert_fits(page)


def test_the_dashboard_message_and_composer_pages_read_well_in_dark_mode(open_page, month_of_activity):
    page = open_page(DESKTOP, color_scheme="dark")
    log_in(page, "ada")
    message = Message.objects.filter(failed_count__gt=0).first()
    pages = {"dark-dashboard": "/admin/", "dark-message": f"/admin/messaging/message/{message.pk}/change/",
             "dark-compose": "/admin/messaging/message/compose/"}
    for name, url in pages.items():
        page.goto(url)
        screenshot(page, name)
        background = page.evaluate("getComputedStyle(document.querySelector('.hd-card')).backgroundColor")
        assert background != "rgb(255, 255, 255)", f"{url}: white cards on a dark page"
