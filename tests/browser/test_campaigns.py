"""In a browser: an editor creates a triggered and a scheduled campaign in the admin, watching
the plain-language summary and the audience size follow the form, then activates, pauses and
resumes each from its page; the list, the editor and the page at 1280 and 390 px."""

import pytest
from django.contrib.auth.models import User

from campaigns.models import Campaign
from tenants.models import Membership, Tenant
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.browser.test_pages_look_finished import assert_columns_line_up, assert_fits, assert_no_column_cut
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eddie(tenant):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    for name in ("ayse", "mehmet"):
        make_device(tenant, f"browser-campaign-{name}-" + "c" * 30, user=name)
    return user


def summary_reads(page, text):
    page.locator("#hd-summary", has_text=text).wait_for()


def status_reads(page, text):
    page.locator(".hd-campaign-status", has_text=text).wait_for()


def activate_pause_resume(page, name):
    status_reads(page, "Draft")
    page.click("#hd-activate")
    status_reads(page, "Active")
    page.click("#hd-pause")
    status_reads(page, "Paused")
    assert Campaign.objects.get(name=name).status == "paused"
    page.click("#hd-resume")
    status_reads(page, "Active")
    assert Campaign.objects.get(name=name).status == "active"


def shot(page, name):
    # From the top: the sticky sidebar and preview would follow a scrolled page down the picture.
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, name)


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_an_editor_creates_activates_pauses_and_resumes_a_triggered_and_a_scheduled_campaign(
    open_page, eddie, tenant
):
    page = open_page()
    log_in(page, "eddie")

    # A triggered campaign: cart_add, 2 minutes, unless purchase.
    page.goto("/admin/campaigns/campaign/")
    page.click("#hd-new-campaign")
    page.fill("#id_name", "Cart abandoned")
    page.check("#id_kind_0")
    page.fill("#id_trigger_event", "cart_add")
    page.fill("#id_delay_value", "2")
    page.select_option("#id_delay_unit", "60")
    page.fill("#id_cancel_event", "purchase")
    page.fill("#id_title", "You left something")
    page.fill("#id_body", "It is still in your cart")
    # The composer's language bar and variant tabs: Turkish, and a second variant to rotate.
    page.select_option("#hd-add-language", "tr")
    page.fill("#id_title", "Sepetinde ürün kaldı")
    page.fill("#id_body", "Hâlâ orada")
    page.click("#hd-add-variant")
    page.fill("#id_title", "Hâlâ düşünüyor musun?")
    page.fill("#id_body", "Tek dokunuş")
    page.click("[data-language='']")
    page.fill("#id_title", "Still thinking?")
    page.fill("#id_body", "Finish in one tap")
    assert page.locator("[data-bind=title]").first.text_content() == "Still thinking?"
    summary_reads(page, "When “cart_add” is recorded, 2 minutes later, unless “purchase” happens first")
    page.locator("#hd-audience-size", has_text="≈ 2 users · 2 devices").wait_for()
    assert page.locator("#hd-schedule").is_hidden()
    shot(page, "campaign-editor-triggered")
    page.click("#hd-save-campaign")
    page.wait_for_url("**/change/")
    activate_pause_resume(page, "Cart abandoned")
    cart = Campaign.objects.get(name="Cart abandoned")
    assert (cart.trigger_event, cart.delay_seconds, cart.cancel_event) == ("cart_add", 120, "purchase")
    variants = cart.content["variants"]
    assert [v["title"] for v in variants] == ["You left something", "Still thinking?"]
    assert [v["localizations"]["tr"]["title"] for v in variants] == [
        "Sepetinde ürün kaldı",
        "Hâlâ düşünüyor musun?",
    ]

    # A scheduled campaign: every Monday at 09:00 in each user's zone.
    page.goto("/admin/campaigns/campaign/new/")
    page.fill("#id_name", "Monday digest")
    page.check("#id_kind_1")
    assert page.locator("#hd-trigger").is_hidden()
    page.select_option("#id_schedule_kind", "weekly")
    page.fill("#id_send_time", "09:00")
    page.check("#id_weekdays_0")
    page.check("#id_zone_mode_1")
    page.fill("#id_title", "Your week")
    page.fill("#id_body", "What happened while you were away")
    summary_reads(page, "Every Monday at 09:00 in each user's time zone")
    shot(page, "campaign-editor-scheduled")
    page.click("#hd-save-campaign")
    page.wait_for_url("**/change/")
    activate_pause_resume(page, "Monday digest")
    digest = Campaign.objects.get(name="Monday digest")
    assert (digest.schedule_kind, digest.weekdays, digest.zone_mode) == ("weekly", [0], "local")
    page.locator("#hd-runs").wait_for()
    shot(page, "campaign-page")

    page.goto("/admin/campaigns/campaign/")
    page.locator("#result_list", has_text="Monday digest").wait_for()
    assert page.locator("#result_list .hd-health").count() == 2
    shot(page, "campaign-list")

    # On a phone: nothing wider than the screen; tables scroll inside their cards.
    phone = open_page(viewport=PHONE)
    log_in(phone, "eddie")
    for name, url in [
        ("campaign-list", "/admin/campaigns/campaign/"),
        ("campaign-page", f"/admin/campaigns/campaign/{digest.pk}/change/"),
        ("campaign-editor-scheduled", f"/admin/campaigns/campaign/{digest.pk}/edit/"),
        ("campaign-editor-triggered", f"/admin/campaigns/campaign/{cart.pk}/edit/"),
    ]:
        phone.goto(url)
        phone.wait_for_load_state("networkidle")
        shot(phone, name)
        assert fits_the_screen(phone), name


def test_a_viewer_sees_the_campaign_page_without_buttons(open_page, tenant):
    user = User.objects.create_user("vera", "vera@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)
    campaign = Campaign.objects.create(
        tenant=tenant,
        name="Read only",
        kind="triggered",
        trigger_event="cart_add",
        content={"language": "en", "variants": [{"title": "Hi", "body": "There"}]},
    )
    page = open_page()
    log_in(page, "vera")

    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")

    status_reads(page, "Draft")
    assert page.locator("#hd-activate, #hd-edit, #hd-archive").count() == 0


def test_the_list_shows_its_last_column_with_two_tenants_and_the_page_tables_line_up(
    open_page, eddie, tenant
):
    other = Tenant.objects.create(name="Globex Corporation", tenant_id="globex")
    Membership.objects.create(user=eddie, tenant=other, role=Membership.Role.EDITOR)
    for owner, name in [
        (tenant, "Cart abandoned, no purchase within 2 minutes"),
        (other, "Weekly deals (A/B)"),
    ]:
        Campaign.objects.create(
            tenant=owner,
            name=name,
            kind="triggered",
            trigger_event="cart_add",
            delay_seconds=120,
            cancel_event="purchase",
            content={
                "language": "en",
                "variants": [{"title": "Hi", "body": "There"}, {"title": "B", "body": "b"}],
            },
        )
    page = open_page()
    log_in(page, "eddie")

    page.goto("/admin/campaigns/campaign/")
    page.locator("#result_list", has_text="Globex Corporation").wait_for()
    shot(page, "campaign-list-two-tenants")
    assert_no_column_cut(page)
    assert_fits(page)

    page.goto(f"/admin/campaigns/campaign/{Campaign.objects.get(tenant=tenant).pk}/change/")
    assert_columns_line_up(page, "#hd-variants .hd-table")
    assert_fits(page)
