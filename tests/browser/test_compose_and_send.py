"""An editor composes a push in a real browser, previews it, tests it on one device,
validates it, sends it through the FCM sandbox with a real database worker, and watches
the progress bar reach 100 %. At phone width, another schedules a push and cancels it."""

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker

from devices.models import Device
from fcm_sandbox.models import SandboxMessage
from fcm_sandbox.state import state
from messaging.models import Message
from tenants.models import Membership
from tests.browser.conftest import PASSWORD, PHONE, log_in, screenshot
from tests.staff import make_device

pytestmark = pytest.mark.django_db(transaction=True)
DEVICES = 24


@pytest.fixture
def editor_login(tenant):
    user = User.objects.create_user("eddie", "eddie@example.com", PASSWORD, is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.EDITOR)
    return "eddie"


@pytest.fixture
def devices(tenant):
    made = [
        make_device(
            tenant,
            f"browser-token-{i:02d}-" + "k" * 30,
            user=f"user_{i}",
            platform=["android", "ios", "web"][i % 3],
        )
        for i in range(DEVICES)
    ]
    # FCM says this one's app was uninstalled: the outcome shows a failure and why.
    made.append(make_device(tenant, "sandbox-unregistered-" + "u" * 30, user="user_gone"))
    return made


@pytest.fixture
def worker(settings):
    """A real django-tasks-db worker in a thread: sends happen after the request, as in production."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    settings.FANOUT_CHUNK_SIZE = 5
    settings.SEND_CONCURRENCY = 2
    runner = Worker(
        queue_names=["default"],
        interval=0.05,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="browser-test",
        excluded_queue_names=[],
    )

    def run():
        try:
            runner.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield runner
    runner.running = False
    thread.join(timeout=10)


def test_an_editor_composes_tests_validates_and_sends_a_push_through_the_sandbox(
    open_page, tenant, editor_login, devices, sandbox_credential, worker
):
    state.configure(latency_ms=60)  # slow enough to watch the bar move
    page = open_page()
    log_in(page, editor_login)
    page.click("text=Compose a push")
    page.wait_for_url("**/compose/")

    page.fill("#id_title", "Your order is on its way")
    page.fill("#id_body", "Arriving today between 2 and 4 pm.")
    preview = page.locator(".hd-device-android")
    assert preview.locator(".hd-note-title").inner_text() == "Your order is on its way"
    assert preview.locator(".hd-note-message").inner_text() == "Arriving today between 2 and 4 pm."
    assert preview.locator(".hd-app-name").inner_text() == "Acme"
    page.click(".hd-preview-tabs >> text=iOS")
    assert page.locator(".hd-device-ios .hd-note-title").is_visible()
    page.click(".hd-preview-tabs >> text=Web")
    web_body = page.locator(".hd-device-web .hd-note-message").inner_text()
    assert web_body == "Arriving today between 2 and 4 pm."
    page.fill("#id_title", "Your order is here")
    assert page.locator(".hd-device-web .hd-note-title").inner_text() == "Your order is here"
    page.locator("input[name=data_key]").first.fill("order_id")
    page.locator("input[name=data_value]").first.fill("A-1042")
    page.locator("#hd-audience-size").filter(has_text=f"{DEVICES + 1} devices will get it").wait_for()
    screenshot(page, "flow-compose")

    page.fill("#id_test_to", "user_3")
    page.click("#hd-test")
    page.locator("#hd-check.hd-check-ok").filter(has_text="Test push sent to 1 of 1 device").wait_for()
    test_push = SandboxMessage.objects.get(target=devices[3].token)
    assert (test_push.title, test_push.message["data"]["order_id"]) == ("Your order is here", "A-1042")

    page.click("#hd-validate")
    page.locator("#hd-check.hd-check-ok").filter(has_text="FCM accepts this message").wait_for()
    screenshot(page, "flow-checked")

    page.click("#hd-send")
    dialog = page.locator("#hd-confirm-dialog")
    dialog.wait_for(state="visible")
    assert f"to {DEVICES + 1} devices now" in dialog.inner_text()
    screenshot(page, "flow-confirm")
    page.click("#hd-dialog-confirm")
    page.wait_for_url("**/admin/messaging/message/*/change/")

    from playwright.sync_api import Error as PlaywrightError  # here: the browser fixture checked it exists

    seen, shot = set(), False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and 100 not in seen:
        try:
            now = int(page.get_attribute(".hd-progress", "aria-valuenow", timeout=2000) or 0)
        except PlaywrightError:  # the page reloads itself once the message is final
            continue
        seen.add(now)
        if 0 < now < 100 and not shot:
            screenshot(page, "flow-sending")
            shot = True
        time.sleep(0.1)
    assert 100 in seen, f"the progress bar stopped at {max(seen, default=0)} %"
    page.wait_for_load_state()
    page.locator("h2", has_text="Outcome").wait_for()
    page.locator(".hd-table", has_text="UNREGISTERED").first.wait_for()
    screenshot(page, "flow-outcome")

    message = Message.objects.get(title="Your order is here", source=Message.Source.ADMIN)
    assert (message.status, message.targeted_count, message.sent_count, message.failed_count) == (
        Message.Status.COMPLETED_WITH_FAILURES,
        DEVICES + 1,
        DEVICES,
        1,
    )
    assert SandboxMessage.objects.filter(target__startswith="browser-token-").count() == DEVICES + 1  # + test
    assert not Device.objects.get(token__startswith="sandbox-unregistered-").is_active


def test_an_editor_schedules_a_push_on_a_phone_and_cancels_it(
    open_page, tenant, editor_login, devices, sandbox_credential, worker
):
    page = open_page(PHONE)
    log_in(page, editor_login)
    page.goto("/admin/messaging/message/compose/")
    page.fill("#id_title", "Black Friday starts now")
    page.fill("#id_body", "Everything 40 % off until Sunday.")
    page.check("input[name=audience][value=filter]")
    page.check("input[name=platforms][value=ios]")
    page.locator("#hd-audience-size").filter(has_text="8 devices will get it").wait_for()
    page.check("input[name=when][value=later]")
    when = timezone.localtime(timezone.now() + timedelta(days=2), timezone.get_fixed_timezone(180))
    page.fill("#id_schedule_at", when.strftime("%Y-%m-%dT09:30"))
    page.select_option("#id_schedule_tz", "Europe/Istanbul")
    assert page.inner_text("#hd-send") == "Schedule…"
    screenshot(page, "flow-schedule")

    page.click("#hd-send")
    dialog = page.locator("#hd-confirm-dialog")
    dialog.wait_for(state="visible")
    assert "It would reach 8 devices if sent now" in dialog.inner_text()
    screenshot(page, "flow-schedule-confirm")
    page.click("#hd-dialog-confirm")
    page.wait_for_url("**/admin/messaging/message/*/change/")
    page.locator(".hd-chip", has_text="Scheduled").wait_for()
    message = Message.objects.get(title="Black Friday starts now")
    assert message.status == Message.Status.SCHEDULED
    istanbul = timezone.get_fixed_timezone(180)
    assert timezone.localtime(message.schedule_at, istanbul).strftime("%H:%M") == "09:30"
    screenshot(page, "flow-scheduled")

    page.click("#hd-cancel")
    page.locator("text=Cancel this message?").wait_for()
    screenshot(page, "flow-cancel-confirm")
    page.click("text=Yes, cancel it")
    page.locator(".hd-chip", has_text="Cancelled").wait_for()
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert not SandboxMessage.objects.filter(title="Black Friday starts now").exists()
