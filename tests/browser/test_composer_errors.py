"""The composer in a browser when something is wrong: errors appear beside their fields after
one request, and a dialog that must not offer to send does not."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def editor_login(tenant):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    make_device(tenant, "browser-token-errors-" + "k" * 30, user="user_1", platform="android")
    return "eddie"


def count_compose_posts(page) -> list:
    posts = []
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/compose/") else None,
    )
    return posts


def fill_valid(page):
    page.fill("#id_title", "Flash sale")
    page.fill("#id_body", "Only until midnight.")


def past_schedule(page):
    page.check("input[name=when][value=later]")
    yesterday = timezone.localtime(timezone.now() - timedelta(days=1), timezone.get_fixed_timezone(180))
    page.fill("#id_schedule_at", yesterday.strftime("%Y-%m-%dT09:00"))
    page.select_option("#id_schedule_tz", "Europe/Istanbul")


@pytest.mark.parametrize(
    "spoil, field, error",
    [
        (lambda page: page.fill("#id_title", ""), "title", "This field is required."),
        (past_schedule, "schedule_at", "That time has passed"),
        (lambda page: page.fill("#id_click_link", "javascript:alert(1)"), "click_link", "javascript:"),
    ],
    ids=["empty-title", "past-time", "javascript-link"],
)
def test_send_now_with_an_invalid_field_shows_the_error_beside_it_after_one_request(
    open_page, editor_login, spoil, field, error
):
    page = open_page()
    log_in(page, editor_login)
    page.goto("/admin/messaging/message/compose/")
    fill_valid(page)
    spoil(page)
    posts = count_compose_posts(page)

    page.click("#hd-send")

    page.locator(f"#hd-field-{field} .hd-error", has_text=error).wait_for()
    page.wait_for_load_state("networkidle")  # a send loop never lets the network go idle
    assert len(posts) == 1
    assert page.inner_text("#hd-send") in ("Send now…", "Schedule…")
    assert page.is_enabled("#hd-send")
    assert not page.locator("#hd-confirm-dialog").is_visible()
    screenshot(page, f"compose-error-{field}")

    # Correcting the field and trying again clears the old error.
    if field == "schedule_at":
        page.check("input[name=when][value=now]")
    elif field == "title":
        page.fill("#id_title", "Flash sale")
    else:
        page.fill("#id_click_link", "myshop://sale/flash")
    page.click("#hd-send")
    page.locator("#hd-confirm-dialog").wait_for(state="visible")
    assert page.locator(".hd-error").count() == 0


def test_the_zero_audience_dialog_offers_no_way_to_send(open_page, editor_login):
    page = open_page(PHONE)
    log_in(page, editor_login)
    page.goto("/admin/messaging/message/compose/")
    fill_valid(page)
    page.check("input[name=audience][value=filter]")
    page.check("input[name=platforms][value=ios]")
    page.locator("#hd-audience-size").filter(has_text="No device matches").wait_for()

    page.click("#hd-send")

    dialog = page.locator("#hd-confirm-dialog")
    dialog.wait_for(state="visible")
    assert "nothing would be sent" in dialog.inner_text()
    assert not page.locator("#hd-dialog-confirm").is_visible()
    assert page.locator("#hd-dialog-cancel").is_visible()
    screenshot(page, "compose-nobody")
