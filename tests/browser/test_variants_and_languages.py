"""In a browser: compose a localized A/B message with the language bar and variant tabs, send
it through the FCM sandbox, read its figures per variant and per language, and pick the
winner by hand for the rest of the audience."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from fcm_sandbox.models import SandboxMessage
from messaging.content import variants_of
from messaging.models import AbTest, Delivery, Message
from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.browser.test_compose_and_send import worker  # noqa: F401 - a fixture
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


# --- Sent end to end ---------------------------------------------------------------------------

PEOPLE = 24  # half Turkish, half English; one Android phone each
TOKEN = "browser-ab-{:02d}-" + "t" * 30
TITLES = {  # (variant, language) -> the title the phone shows
    (0, "en"): "Weekend sale",
    (0, "tr"): "Hafta sonu indirimi",
    (1, "en"): "48 hours left",
    (1, "tr"): "Son 48 saat",
}


def compose_localized_ab(page, *, test_percent: int) -> None:
    """Variant A and B, each in English and Turkish, as an A/B test of `test_percent` % with
    a long wait (the winner is picked by hand)."""
    page.goto("/admin/messaging/message/compose/")
    page.fill("#id_title", TITLES[(0, "en")])
    page.fill("#id_body", "Everything 30 % off.")
    page.select_option("#hd-add-language", "tr")
    page.fill("#id_title", TITLES[(0, "tr")])
    page.fill("#id_body", "Her şey %30 indirimli.")
    page.click("#hd-add-variant")
    page.fill("#id_title", TITLES[(1, "tr")])
    page.fill("#id_body", "%30 indirim bitiyor.")
    page.click("[data-language='']")
    page.fill("#id_title", TITLES[(1, "en")])
    page.fill("#id_body", "30 % off ends soon.")
    page.check("input[name=hd_variant_mode][value=ab_test]")
    page.fill("#hd-ab-percent", str(test_percent))
    page.fill("#hd-ab-wait", "600")


def wait_until(condition, *, seconds=60, what="the condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def pushes_by_token():
    received = {}
    for push in SandboxMessage.objects.filter(target__startswith="browser-ab-").order_by("pk"):
        received.setdefault(push.target, []).append(push.message["data"])
    return received


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_a_localized_ab_message_goes_out_shows_its_figures_and_the_winner_picked_by_hand_reaches_the_rest(
    open_page,
    tenant,
    sandbox_credential,
    worker,  # noqa: F811 - the fixture
    client,
    app_key,
    viewport,
):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    languages = {}
    for i in range(PEOPLE):
        language = "tr" if i % 2 else "en"
        device = make_device(tenant, TOKEN.format(i), user=f"person_{i}", language=language)
        languages[device.token] = language
    page = open_page(viewport) if viewport else open_page()
    log_in(page, "eddie")

    compose_localized_ab(page, test_percent=50)
    page.click("#hd-send")
    dialog = page.locator("#hd-confirm-dialog")
    dialog.wait_for(state="visible")
    page.click("#hd-dialog-confirm")
    page.wait_for_url("**/admin/messaging/message/*/change/")
    message = Message.objects.get(source=Message.Source.ADMIN)

    # The test group (half the people) gets A or B in its language; the rest waits.
    wait_until(
        lambda: (
            AbTest.objects.filter(message=message, test_sent_at__isnull=False).exists()
            and not message.deliveries.exclude(status=Delivery.Status.SENT).exists()
        ),
        what="the test group's pushes",
    )
    tested = pushes_by_token()
    assert 0 < len(tested) < PEOPLE
    assert all(len(pushes) == 1 for pushes in tested.values())
    by_token = {d.device.token: d for d in message.deliveries.select_related("device")}
    for token, [push] in tested.items():
        assert push["title"] == TITLES[(by_token[token].variant, languages[token])]
    assert {d.variant for d in by_token.values()} == {0, 1}
    # The app reports taps on (up to) three of variant B's pushes and one of A's.
    # (The split is a hash of message and user ids, so a small test group may hold fewer
    # than three of B: the expected figures are counted, not assumed.)
    opened_b = [t for t, d in by_token.items() if d.variant == 1][:3]
    opened_a = [t for t, d in by_token.items() if d.variant == 0][:1]
    opened = opened_b + opened_a
    for token in opened:
        response = client.post(
            "/pushes/opened",
            {
                "tenant_id": tenant.tenant_id,
                "api_key": app_key,
                "tracking_token": tested[token][0]["tracking_token"],
            },
            format="json",
        )
        assert response.status_code == 200, response.content

    page.reload()
    figures = page.locator("#hd-variants tbody tr")
    sent_b = sum(1 for d in by_token.values() if d.variant == 1)
    sent_a = len(by_token) - sent_b
    assert figures.nth(0).locator("td").nth(1).inner_text() == str(sent_a)
    assert figures.nth(0).locator("td").nth(3).inner_text() == str(len(opened_a))
    assert figures.nth(1).locator("td").nth(1).inner_text() == str(sent_b)
    assert figures.nth(1).locator("td").nth(3).inner_text() == str(len(opened_b))
    assert f"n={sent_b}" in figures.nth(1).locator("td").nth(4).inner_text()
    sent_tr = sum(1 for t in by_token if languages[t] == "tr")
    languages_table = page.locator("#hd-languages tbody tr")
    rows = {r.locator("td").nth(0).locator(".hd-code").inner_text(): r for r in languages_table.all()}
    assert set(rows) == {"en", "tr"}
    assert rows["tr"].locator("td").nth(1).inner_text() == str(sent_tr)
    assert rows["en"].locator("td").nth(1).inner_text() == str(len(by_token) - sent_tr)
    opened_tr = sum(1 for t in opened if languages[t] == "tr")
    assert rows["tr"].locator("td").nth(3).inner_text() == str(opened_tr)
    page.locator("#hd-pick-winner").scroll_into_view_if_needed()
    screenshot(page, "message-ab-test-sent")

    # Staff pick B by hand; it goes to everyone who was not in the test, in their language.
    page.click("#hd-pick-winner button[value='1']")
    page.locator("#hd-ab-test .hd-chip", has_text="Variant B won").wait_for()
    assert "Picked by hand (eddie)" in page.inner_text("#hd-winner-reason")
    wait_until(
        lambda: Message.objects.filter(pk=message.pk, status=Message.Status.COMPLETED).exists(),
        what="the rest's pushes",
    )
    received = pushes_by_token()
    assert len(received) == PEOPLE
    assert all(len(pushes) == 1 for pushes in received.values()), "a device got two pushes"
    for token, [push] in received.items():
        if token not in tested:
            assert push["title"] == TITLES[(1, languages[token])]
    ab = AbTest.objects.get(message=message)
    assert (ab.winner, ab.reason, ab.decided_by) == (1, AbTest.Reason.MANUAL, user)
    assert [t["opened"] for t in ab.tally] == [len(opened_a), len(opened_b)]

    page.reload()
    page.locator("#hd-variants").scroll_into_view_if_needed()
    figures = page.locator("#hd-variants tbody tr")
    assert figures.nth(1).locator("td").nth(1).inner_text() == str(PEOPLE - sent_a)
    assert "hd-row-winner" in (figures.nth(1).get_attribute("class") or "")
    rows = {
        r.locator("td").nth(0).locator(".hd-code").inner_text(): r
        for r in page.locator("#hd-languages tbody tr").all()
    }
    assert rows["tr"].locator("td").nth(1).inner_text() == str(PEOPLE // 2)
    assert rows["en"].locator("td").nth(1).inner_text() == str(PEOPLE // 2)
    screenshot(page, "message-ab-winner-sent")
    assert_no_sideways_page_scroll(page)
    for table in ("#hd-variants .hd-table-scroll", "#hd-languages .hd-table-scroll"):
        sideways = assert_scrolls_in_its_box(page, table)
        assert sideways > 0 if viewport == PHONE else sideways <= 0, (table, sideways)


def assert_no_sideways_page_scroll(page):
    """At any width the page itself never scrolls sideways: wide tables scroll in their box."""
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the window"


def assert_scrolls_in_its_box(page, selector):
    """The element's content is wider than its box at phone width, and the box (not the page)
    scrolls sideways to show it."""
    box = page.evaluate(
        """(selector) => {
        const el = document.querySelector(selector);
        const r = el.getBoundingClientRect();
        return {scroll: el.scrollWidth - el.clientWidth, overflowX: getComputedStyle(el).overflowX,
                right: Math.round(r.right), width: window.innerWidth};
    }""",
        selector,
    )
    assert box["overflowX"] in ("auto", "scroll"), box
    assert box["right"] <= box["width"], f"{selector} reaches past the window: {box}"
    return box["scroll"]


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_the_segment_list_fits_the_screen_at_both_widths_even_with_a_long_name(open_page, tenant, viewport):
    from audiences.services import create_segment
    from fcm_sandbox.management.commands.demo import DEMO_SEGMENTS

    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    for name, rules in DEMO_SEGMENTS.items():
        create_segment(tenant=tenant, name=name, rules=rules, description="From the demo")
    # A name with no space to break at must not push the page wider either.
    create_segment(tenant=tenant, name="big_spenders_in_the_last_fourteen_days_on_android_and_ios", rules={})
    make_device(tenant, "browser-segment-list-" + "l" * 30)
    page = open_page(viewport) if viewport else open_page()
    log_in(page, "eddie")

    page.goto("/admin/audiences/segment/")
    page.locator("#result_list", has_text="Turkish speakers on Android").wait_for()
    sizes_filled_in(page, 4)
    screenshot(page, "segments")
    assert_no_sideways_page_scroll(page)
    # At phone width each row is a card (as in every list), its long name wrapped: nothing to
    # scroll to. At desktop width the table fits its box.
    assert (
        page.evaluate(
            "(() => { const r = document.querySelector('#changelist .results');"
            " return r.scrollWidth - r.clientWidth; })()"
        )
        <= 0
    )


def sizes_filled_in(page, rows: int) -> dict[str, str]:
    """Wait until every row of the segment list shows its size; {name: size}."""
    page.locator("#result_list tbody tr").nth(rows - 1).scroll_into_view_if_needed()
    page.wait_for_function(
        "(rows) => { const cells = [...document.querySelectorAll('#result_list .segment-size')];"
        " return cells.length === rows && cells.every((c) => / users? · /.test(c.textContent)); }",
        arg=rows,
    )
    page.evaluate("window.scrollTo(0, 0)")
    return {
        row.locator(".field-name").inner_text(): row.locator(".field-size").inner_text()
        for row in page.locator("#result_list tbody tr").all()
    }


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_the_segment_list_is_drawn_before_any_count_and_each_row_then_shows_its_size(
    open_page, tenant, viewport
):
    from audiences.services import create_segment
    from devices.models import AppUser
    from fcm_sandbox.management.commands.demo import DEMO_SEGMENTS

    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)
    for name, rules in DEMO_SEGMENTS.items():
        create_segment(tenant=tenant, name=name, rules=rules)
    for i in range(12):  # more rows than a phone shows at once
        create_segment(tenant=tenant, name=f"everyone {i:02}", rules={})
    make_device(tenant, "browser-segment-size-a-" + "l" * 30, user="ayse")
    make_device(tenant, "browser-segment-size-b-" + "l" * 30, user="ayse", platform="ios")
    make_device(tenant, "browser-segment-size-c-" + "l" * 30, user="john", language="en")
    AppUser.objects.filter(app_user_id="john").update(last_seen_at=timezone.now() - timedelta(days=30))
    page = open_page(viewport) if viewport else open_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    log_in(page, "eddie")

    drawn = page.request.get("/admin/audiences/segment/").text()
    assert drawn.count("Counting …") == 15, "the page comes with no size counted"
    page.goto("/admin/audiences/segment/")
    sizes = sizes_filled_in(page, 15)

    assert sizes["Turkish speakers on Android"] == "1 user · 2 devices"
    assert sizes["dormant 7 days"] == "1 user · 1 device"
    assert sizes["bought over 50 in 14 days"] == "0 users · 0 devices"
    assert sizes["everyone 11"] == "2 users · 3 devices"
    screenshot(page, "segment-sizes")
    assert_no_sideways_page_scroll(page)
    assert not errors, errors

    # A count that fails says so, and can be asked again.
    turkish = page.locator("#result_list tbody tr", has_text="Turkish speakers on Android")
    page.route("**/preview/?segment=*", lambda route: route.fulfill(status=502, body="Bad gateway"))
    page.reload()
    turkish.locator(".segment-size", has_text="Not counted").wait_for()
    screenshot(page, "segment-size-not-counted")
    assert_no_sideways_page_scroll(page)
    page.unroute("**/preview/?segment=*")
    turkish.get_by_role("button", name="Count again").click()
    turkish.locator(".segment-size", has_text="1 user · 2 devices").wait_for()
