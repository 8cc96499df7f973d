"""Every main page, at desktop and phone width: screenshots to look at, and no sideways scrolling."""

import json

import pytest
from django.contrib.auth.models import User

from devices.models import Device
from fcm_sandbox.accounts import create_service_account
from messaging.models import Message
from tenants.credentials import set_credentials
from tenants.models import ApiKey, FirebaseCredential, Membership, Tenant
from tests.browser.conftest import DESKTOP, PASSWORD, PHONE, log_in, screenshot
from tests.browser.seed import TITLES, seed_activity
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def month_of_activity(tenant, sandbox_private_key):
    user = User.objects.create_user("ada", "ada@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.ADMIN)
    ApiKey.generate(tenant=tenant, name="Android app", kind=ApiKey.Kind.APP)
    ApiKey.generate(tenant=tenant, name="Backend", kind=ApiKey.Kind.SERVER)[0].revoke()
    seed_activity(tenant)
    account = create_service_account(
        project_id="acme-push",
        token_uri="https://oauth2.googleapis.com/token",
        client_email="herald@acme-push.iam.gserviceaccount.com",
        private_key_pem=sandbox_private_key,
    )
    set_credentials(tenant=tenant, raw=json.dumps(account), uploaded_by=user).record_check(
        ok=False,
        message="Google refused the key of herald@acme-push.iam.gserviceaccount.com: "
        "invalid_grant. Generate a new key under Project settings > Service accounts "
        "and upload it.",
    )
    return tenant


def assert_fits(page):
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


def assert_no_column_cut(page):
    """A list's table fits its box: no column hidden behind a sideways scroll or the page edge."""
    cut = page.evaluate("""() => {
        const results = document.querySelector('#changelist .results');
        const table = document.getElementById('result_list');
        if (!results || !table) return null;
        const edge = Math.min(results.getBoundingClientRect().right, window.innerWidth);
        return {scroll: results.scrollWidth - results.clientWidth,
                past: Math.round(table.getBoundingClientRect().right - edge)};
    }""")
    assert cut is not None, f"{page.url} shows no list"
    assert cut["scroll"] <= 0 and cut["past"] <= 0, f"{page.url} cuts its last column: {cut}"


def assert_columns_line_up(page, table):
    """Every cell sits in its column, and its text lines up with the heading's (left or right)."""
    off = page.evaluate(
        """(selector) => {
        const text = (el) => {
            const range = document.createRange();
            range.selectNodeContents(el);
            const boxes = Array.from(range.getClientRects()).filter((r) => r.width > 0);
            return boxes.length ? boxes[0] : el.getBoundingClientRect();
        };
        const table = document.querySelector(selector);
        const heads = Array.from(table.querySelectorAll('thead th'));
        const bad = [];
        table.querySelectorAll('tbody tr').forEach((tr, row) => {
            Array.from(tr.children).forEach((td, i) => {
                const cell = td.getBoundingClientRect(), head = heads[i].getBoundingClientRect();
                const display = getComputedStyle(td).display;
                const t = text(td), h = text(heads[i]);
                const lined = Math.abs(t.left - h.left) <= 1 || Math.abs(t.right - h.right) <= 1;
                if (display !== 'table-cell' || Math.abs(cell.left - head.left) > 1 || !lined)
                    bad.push([row, i, display, Math.round(t.left), Math.round(h.left)]);
            });
        });
        return bad;
    }""",
        table,
    )
    assert not off, (
        f"{page.url}: cells out of line with their headings (row, column, display, x, heading x): {off[:5]}"
    )


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
        "not-found": "/admin/no-such-page/",
    }
    for name, url in pages.items():
        page.goto(url)
        assert page.locator("#content").count(), f"{url} rendered no admin page"
        if name == "compose":
            page.fill("#id_title", "Your order is on its way")
            page.fill("#id_body", "Arriving today between 2 and 4 pm. Tap to follow the courier.")
            page.wait_for_function(  # a function, not a string: the CSP forbids eval
                "() => !document.getElementById('hd-audience-size').textContent.includes('Counting')"
            )
        screenshot(page, name)
        assert_fits(page)
        if name == "device":
            assert_columns_line_up(page, ".hd-device-history .hd-table")


def test_the_lists_show_their_last_column_at_1280_px_with_the_sidebar_open(
    open_page, month_of_activity, sandbox_private_key
):
    # A second tenant adds each list's tenant column, the widest case staff meet.
    other = Tenant.objects.create(name="Globex Corporation", tenant_id="globex")
    Membership.objects.create(user=User.objects.get(username="ada"), tenant=other, role=Membership.Role.ADMIN)
    ApiKey.generate(tenant=other, name="Globex web app", kind=ApiKey.Kind.APP)
    make_device(other, "globex-token-" + "g" * 40, user="globex_user")
    account = create_service_account(
        project_id="globex-prod-push",
        token_uri="https://oauth2.googleapis.com/token",
        client_email="firebase-adminsdk-x1y2z@globex-prod-push.iam.gserviceaccount.com",
        private_key_pem=sandbox_private_key,
    )
    set_credentials(tenant=other, raw=json.dumps(account))
    page = open_page(DESKTOP)
    log_in(page, "ada")
    lists = {
        "messages": "/admin/messaging/message/",
        "devices": "/admin/devices/device/",
        "keys": "/admin/tenants/apikey/",
        "credentials": "/admin/tenants/firebasecredential/",
    }
    for name, url in lists.items():
        page.goto(url)
        assert page.locator("#nav-sidebar").is_visible()  # open, as it is by default
        screenshot(page, f"two-tenants-{name}")
        assert_no_column_cut(page)
        assert_fits(page)


def test_the_dashboard_message_and_composer_pages_read_well_in_dark_mode(open_page, month_of_activity):
    page = open_page(DESKTOP, color_scheme="dark")
    log_in(page, "ada")
    message = Message.objects.filter(failed_count__gt=0).first()
    pages = {
        "dark-dashboard": "/admin/",
        "dark-message": f"/admin/messaging/message/{message.pk}/change/",
        "dark-compose": "/admin/messaging/message/compose/",
    }
    for name, url in pages.items():
        page.goto(url)
        screenshot(page, name)
        background = page.evaluate("getComputedStyle(document.querySelector('.hd-card')).backgroundColor")
        assert background != "rgb(255, 255, 255)", f"{url}: white cards on a dark page"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_the_sandbox_inbox_fits_the_screen(open_page, fcm_sandbox, viewport):
    from fcm_sandbox.models import SandboxMessage

    token = "browser-token-" + "k" * 140
    for n, (title, body) in enumerate(TITLES):
        SandboxMessage.objects.create(
            name=f"projects/acme-push/messages/{n}",
            project_id="acme-push",
            sender="herald@acme-push.test",
            target_kind="token",
            target=token,
            title=title,
            body=body,
            message={"token": token, "data": {"title": title, "body": body}},
        )
    page = open_page(viewport)

    page.goto(f"{fcm_sandbox.url}/")
    page.locator(".note").first.wait_for()
    screenshot(page, "sandbox-inbox")
    assert_fits(page)
    page.goto(f"{fcm_sandbox.url}/?token={token}")
    screenshot(page, "sandbox-inbox-device")
    assert_fits(page)
