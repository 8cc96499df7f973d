"""In a browser: an editor builds a segment with the rule builder (an event rule with a param
filter, an OR group, an except group), watches its live size change, saves it, finds the same
rules on reopening, and sends a push to it from the composer, through the FCM sandbox."""

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from audiences.models import Segment
from devices.models import Event
from fcm_sandbox.models import SandboxMessage
from messaging.models import Audience, Message
from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.browser.test_compose_and_send import worker  # noqa: F401 - a fixture
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "browser-segment-{}-" + "s" * 30


@pytest.fixture
def people(tenant):
    """ayse bought for 80 (group 1) and speaks Turkish (group 2); mehmet speaks Turkish; john
    bought for 20 only; deniz bought for 120 but lives in DE (excepted)."""

    def person(name, *, amount=None, **fields):
        device = make_device(tenant, TOKEN.format(name), user=name, **fields)
        if amount is not None:
            Event.objects.create(
                tenant=tenant,
                user=device.user,
                name="purchase",
                params={"amount": amount},
                occurred_at=timezone.now(),
                session_id="s",
                fingerprint=f"f-{name}",
            )
        return device

    return {
        "ayse": person("ayse", amount=80),
        "mehmet": person("mehmet", platform="ios"),
        "john": person("john", amount=20, language="en", country="GB"),
        "deniz": person("deniz", amount=120, language="de", country="DE"),
    }


def size_reads(page, text):
    page.locator(".rule-size", has_text=text).wait_for()


def build_segment(page):
    include, exclude = page.locator(".rule-include"), page.locator(".rule-exclude")
    size_reads(page, "≈ 4 users · 4 devices that allow pushes")  # no include group: everyone

    # Group 1: did purchase in the last 14 days where amount > 50.
    include.locator(".rule-add-group").click()
    rule = include.locator(".rule-group").nth(0).locator(".rule").first
    rule.locator("select.rule-type").select_option("event")
    rule = include.locator(".rule-group").nth(0).locator(".rule").first
    rule.locator(".rule-event").fill("purchase")
    rule.locator(".rule-days").fill("14")
    rule.locator(".rule-add-param").click()
    param = include.locator(".rule-group").nth(0).locator(".rule-param").first
    param.locator("select.param-op").select_option(">")
    param.locator(".param-value").fill("50")
    size_reads(page, "≈ 2 users · 2 devices that allow pushes")  # ayse, deniz

    # OR group 2: language in tr AND platform in android, ios.
    include.locator(".rule-add-group").click()
    group = include.locator(".rule-group").nth(1)
    group.locator(".rule-value").first.fill("tr")
    group.locator(".rule-add").click()
    second = group.locator(".rule").nth(1)
    second.locator("select.rule-property").select_option("platform")
    group.locator(".rule").nth(1).locator(".rule-value").fill("android, ios")
    size_reads(page, "≈ 3 users · 3 devices that allow pushes")  # + mehmet
    assert include.locator(".rule-or").count() == 1 and group.locator(".rule-and").count() == 1

    # Except: country in DE.
    exclude.locator(".rule-add-group").click()
    except_rule = exclude.locator(".rule").first
    except_rule.locator("select.rule-property").select_option("country")
    exclude.locator(".rule").first.locator(".rule-value").fill("DE")
    size_reads(page, "≈ 2 users · 2 devices that allow pushes")  # - deniz


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_an_editor_builds_a_segment_and_sends_a_push_to_it(
    open_page,
    tenant,
    people,
    viewport,
    sandbox_credential,
    worker,  # noqa: F811 - the fixture
):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    page = open_page(viewport) if viewport else open_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    log_in(page, "eddie")

    page.goto("/admin/audiences/segment/add/")
    if page.locator("select#id_tenant").count():
        page.select_option("#id_tenant", str(tenant.pk))
    page.fill("#id_name", "Big buyers or Turkish")
    build_segment(page)
    page.locator(".rule-add-group").last.scroll_into_view_if_needed()
    screenshot(page, "segment-editor")
    page.click("input[name=_continue]")
    page.wait_for_url("**/audiences/segment/*/change/")

    segment = Segment.objects.get()
    assert segment.rules == {
        "version": 1,
        "include": [
            [
                {
                    "type": "event",
                    "event": "purchase",
                    "op": "did",
                    "within_days": 14,
                    "params": [{"param": "amount", "op": ">", "value": 50}],
                }
            ],
            [
                {"type": "property", "property": "language", "op": "in", "value": ["tr"]},
                {"type": "property", "property": "platform", "op": "in", "value": ["android", "ios"]},
            ],
        ],
        "exclude": [[{"type": "property", "property": "country", "op": "in", "value": ["DE"]}]],
    }
    # Reopened: the builder draws the same rules and the same size.
    page.goto(f"/admin/audiences/segment/{segment.pk}/change/")
    size_reads(page, "≈ 2 users · 2 devices that allow pushes")
    assert page.locator(".rule-include .rule-group").count() == 2
    assert page.locator(".rule-exclude .rule-group").count() == 1
    assert page.locator(".rule-event").input_value() == "purchase"
    assert page.locator(".rule-days").input_value() == "14"
    assert page.locator(".param-value").input_value() == "50"
    assert page.locator(".rule-exclude .rule-value").input_value() == "DE"

    page.goto("/admin/messaging/message/compose/")
    page.fill("#id_title", "A gift for you")
    page.fill("#id_body", "Open the app to see it.")
    page.locator("#hd-field-audience label", has_text="Segment").click()
    options = page.locator("#id_segment option").all_inner_texts()
    assert "Big buyers or Turkish" in options, "named, not counted, as the page renders"
    page.select_option("#id_segment", str(segment.pk))
    page.locator("#hd-audience-size", has_text="≈ 2 users · 2 devices that allow pushes").wait_for()
    page.locator("#hd-field-audience").scroll_into_view_if_needed()
    screenshot(page, "compose-segment")

    # The same builder as ad-hoc rules: the size follows it.
    page.locator("#hd-field-audience label", has_text="Rules").click()
    page.locator("#hd-audience-size", has_text="≈ 4 users · 4 devices that allow pushes").wait_for()
    page.locator(".hd-rules-part .rule-include .rule-add-group").click()
    page.locator(".hd-rules-part .rule-value").first.fill("de")
    page.locator("#hd-audience-size", has_text="≈ 1 user · 1 device that allows pushes").wait_for()
    page.locator(".hd-rules-part").scroll_into_view_if_needed()
    screenshot(page, "compose-rules")

    page.locator("#hd-field-audience label", has_text="Segment").click()
    page.locator("#hd-audience-size", has_text="≈ 2 users · 2 devices that allow pushes").wait_for()
    page.click("#hd-send")
    dialog = page.locator("#hd-confirm-dialog")
    dialog.wait_for(state="visible")
    assert "to 2 devices now" in dialog.inner_text()
    page.click("#hd-dialog-confirm")
    page.wait_for_url("**/admin/messaging/message/*/change/")
    page.locator("h2", has_text="Outcome").wait_for(timeout=60_000)

    message = Message.objects.get(title="A gift for you")
    assert (message.audience, message.audience_params) == (Audience.SEGMENT, {"segment_id": segment.pk})
    assert set(SandboxMessage.objects.values_list("target", flat=True)) == {
        TOKEN.format("ayse"),
        TOKEN.format("mehmet"),
    }
    assert message.sent_count == 2
    assert not errors, errors


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["1280", "390"])
def test_the_composer_names_its_segments_and_counts_the_one_picked(open_page, tenant, viewport):
    from audiences.services import create_segment
    from tests.browser.test_variants_and_languages import assert_no_sideways_page_scroll

    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    make_device(tenant, TOKEN.format("ayse-android"), user="ayse", language="tr")
    make_device(tenant, TOKEN.format("ayse-ios"), user="ayse", language="tr", platform="ios")
    make_device(tenant, TOKEN.format("mehmet"), user="mehmet", language="tr", permission=False)
    make_device(tenant, TOKEN.format("john"), user="john", language="en")
    turkish = create_segment(
        tenant=tenant,
        name="Turkish speakers",
        rules={"include": [[{"type": "property", "property": "language", "op": "in", "value": ["tr"]}]]},
    )
    for i in range(12):
        create_segment(tenant=tenant, name=f"everyone {i:02}", rules={})
    page = open_page(viewport) if viewport else open_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    log_in(page, "eddie")
    page.goto("/admin/messaging/message/compose/")
    page.locator("#hd-audience-size", has_text="3 devices will get it").wait_for()  # everyone, at first

    options = page.locator("#id_segment option").all_inner_texts()
    assert options == ["Choose a segment", "Turkish speakers"] + [f"everyone {i:02}" for i in range(12)], (
        options
    )
    # While the picked segment is counted the estimate says so, not the last audience's size.
    held = []
    page.route("**/compose/audience/", lambda route: held.append(route))
    page.locator("#hd-field-audience label", has_text="Segment").click()
    with page.expect_request("**/compose/audience/"):
        page.select_option("#id_segment", str(turkish.pk))
    page.wait_for_function("() => document.querySelector('#hd-audience-size').textContent === 'Counting …'")
    assert "hd-busy" in page.locator(".hd-audience-size").get_attribute("class")
    screenshot(page, "compose-segment-counting")
    assert held, "the count is held until the page has been seen saying so"
    for route in held:
        route.continue_()
    page.unroute("**/compose/audience/")
    # ayse (two devices) and mehmet (none that allows pushes): users and devices, exactly.
    size = page.locator("#hd-audience-size", has_text="≈ 2 users · 2 devices that allow pushes")
    size.wait_for()
    page.locator("#hd-field-audience").scroll_into_view_if_needed()
    screenshot(page, "compose-segment-size")
    assert_no_sideways_page_scroll(page)

    # A count that fails says so, in the estimate's warning colour.
    page.route("**/compose/audience/", lambda route: route.fulfill(status=502, body="Bad gateway"))
    page.select_option("#id_segment", label="everyone 03")
    page.locator("#hd-audience-size", has_text="Could not count the audience").wait_for()
    assert "hd-warn-text" in page.locator(".hd-audience-size").get_attribute("class")
    page.locator("#hd-field-audience").scroll_into_view_if_needed()
    screenshot(page, "compose-segment-size-failed")
    page.unroute("**/compose/audience/")
    page.select_option("#id_segment", str(turkish.pk))
    size.wait_for()
    assert "hd-warn-text" not in page.locator(".hd-audience-size").get_attribute("class")
    assert not [e for e in errors if "502" not in e], errors
