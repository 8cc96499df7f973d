"""With the Content-Security-Policy on, the admin, the composer and the API docs still work,
and the browser reports no violation on any of them."""

import pytest

from devices.models import Device
from messaging.models import Message
from tenants.models import FirebaseCredential
from tests.browser.conftest import DESKTOP, log_in
from tests.browser.test_pages_look_finished import month_of_activity  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)

# Every violation the page sees, whatever reports it (the console may word it differently).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def watched_page(open_page):
    page = open_page(DESKTOP)
    page.add_init_script(RECORD_VIOLATIONS)
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    return page


def assert_no_violations(page):
    violations = page.evaluate("window.__cspViolations")
    csp_errors = [text for text in page.console_errors if "Content Security Policy" in text]
    assert not violations and not csp_errors, f"{page.url}: {violations} {csp_errors}"


def test_every_admin_page_works_under_the_policy(open_page, month_of_activity):  # noqa: F811
    page = watched_page(open_page)
    log_in(page, "ada")
    assert_no_violations(page)
    message = Message.objects.filter(failed_count__gt=0).first()
    device = Device.objects.filter(is_active=True).first()
    for url in [
        "/admin/",
        "/admin/messaging/message/",
        f"/admin/messaging/message/{message.pk}/change/",
        "/admin/devices/device/",
        f"/admin/devices/device/{device.pk}/change/",
        "/admin/tenants/apikey/",
        "/admin/tenants/apikey/add/",
        "/admin/tenants/firebasecredential/",
        f"/admin/tenants/firebasecredential/{FirebaseCredential.objects.get().pk}/change/",
    ]:
        response = page.goto(url)
        assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
        assert page.locator("#content").count(), f"{url} rendered no admin page"
        assert_no_violations(page)


def test_the_composer_still_counts_and_previews_under_the_policy(open_page, month_of_activity):  # noqa: F811
    page = watched_page(open_page)
    log_in(page, "ada")
    page.goto("/admin/messaging/message/compose/")
    page.fill("#id_title", "Your order is on its way")
    page.fill("#id_body", "Arriving today between 2 and 4 pm.")
    page.wait_for_function(  # a function, not a string: the CSP forbids eval
        "() => !document.getElementById('hd-audience-size').textContent.includes('Counting')"
    )

    assert "Your order is on its way" in page.content()
    assert_no_violations(page)


def test_the_api_docs_render_under_their_policy(open_page, db):
    page = watched_page(open_page)

    response = page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")

    assert "Herald API" in page.locator(".swagger-ui .info .title").inner_text()
    assert "script-src 'self'" in response.headers["content-security-policy"]
    script_src = response.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert "unsafe-inline" not in script_src
    assert_no_violations(page)
