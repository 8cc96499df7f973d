"""Devices, app users and events in the admin: scoped, searchable, read-only, deactivatable."""

import pytest

from devices.models import Device, Event, TokenRotation
from tests.staff import make_device

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant
LONG_TOKEN = "fK3aQ9xZ1bC2dE3fG4hI5j:APA91b" + "Q" * 130 + "tail-of-the-token"


@pytest.fixture
def phone(tenant):
    device = make_device(tenant, LONG_TOKEN, user="ayse_42")
    Event.objects.create(
        tenant=tenant,
        user=device.user,
        device=device,
        name="purchase",
        occurred_at=device.created_at,
        session_id="s-1",
        params={"sku": "A-1"},
        fingerprint="f1",
    )
    TokenRotation.objects.create(
        device=device, old_token="old-token-" + "o" * 30, old_token_hash="h" * 64, new_token=LONG_TOKEN
    )
    return device


def test_the_device_list_shows_only_the_users_tenants(viewer, phone, other_tenant):
    make_device(other_tenant, "globex-token-" + "g" * 20, user="globex_user")

    page = viewer.get("/admin/devices/device/").content.decode()

    assert "ayse_42" in page and "globex_user" not in page


def test_a_device_is_found_by_its_whole_token(viewer, phone, tenant):
    make_device(tenant, "another-token-" + "z" * 30, user="zeki")

    page = viewer.get("/admin/devices/device/", {"q": LONG_TOKEN}).content.decode()

    assert "ayse_42" in page and "zeki" not in page


def test_a_device_is_found_by_part_of_its_token_or_its_app_user_id(viewer, phone):
    assert "ayse_42" in viewer.get("/admin/devices/device/", {"q": "tail-of-the"}).content.decode()
    assert "ayse_42" in viewer.get("/admin/devices/device/", {"q": "ayse"}).content.decode()
    assert "ayse_42" not in viewer.get("/admin/devices/device/", {"q": "nobody"}).content.decode()


def test_searching_never_finds_another_tenants_device(viewer, other_tenant):
    make_device(other_tenant, LONG_TOKEN, user="globex_user")

    assert "globex_user" not in viewer.get("/admin/devices/device/", {"q": LONG_TOKEN}).content.decode()


def test_the_device_page_shows_events_token_history_and_deactivation_reason(viewer, phone):
    phone.deactivate(reason="UNREGISTERED")

    page = viewer.get(f"/admin/devices/device/{phone.pk}/change/").content.decode()

    assert "purchase" in page and "sku=A-1" in page
    assert "Token history" in page and "…" + "o" * 10 + "</span> →" in page
    assert "deactivated" in page and "UNREGISTERED" in page


def test_another_tenants_device_is_a_404(tenant_admin, other_tenant):
    theirs = make_device(other_tenant, "globex-token-" + "g" * 20)

    assert tenant_admin.get(f"/admin/devices/device/{theirs.pk}/change/").status_code == 404
    assert tenant_admin.post(f"/admin/devices/device/{theirs.pk}/deactivate/").status_code == 404
    assert Device.objects.get(pk=theirs.pk).is_active


def test_devices_are_read_only_even_for_a_tenant_admin(tenant_admin, phone):
    assert tenant_admin.get("/admin/devices/device/add/").status_code == 403
    tenant_admin.post(f"/admin/devices/device/{phone.pk}/change/", {"platform": "ios", "is_active": ""})

    phone.refresh_from_db()
    assert phone.platform == "android" and phone.is_active


def test_a_viewer_cannot_deactivate_devices(viewer, phone):
    assert "deactivate_selected" not in viewer.get("/admin/devices/device/").content.decode()
    assert viewer.post(f"/admin/devices/device/{phone.pk}/deactivate/").status_code == 403
    viewer.post(
        "/admin/devices/device/",
        {"action": "deactivate_selected", "_selected_action": [phone.pk], "confirmed": "yes"},
    )

    assert Device.objects.get(pk=phone.pk).is_active


def test_an_editor_deactivates_one_device_after_confirming(editor, phone):
    question = editor.get(f"/admin/devices/device/{phone.pk}/deactivate/")
    assert b"Herald stops sending to it" in question.content
    assert Device.objects.get(pk=phone.pk).is_active

    editor.post(f"/admin/devices/device/{phone.pk}/deactivate/")

    phone.refresh_from_db()
    assert not phone.is_active and phone.deactivation_reason == "staff: eddie"


def test_an_editor_deactivates_devices_in_bulk_after_confirming(editor, tenant, other_tenant):
    mine = [make_device(tenant, f"tok-{i}-" + "m" * 20, user=f"u{i}") for i in range(3)]
    theirs = make_device(other_tenant, "tok-globex-" + "g" * 20)
    selected = {"action": "deactivate_selected", "_selected_action": [d.pk for d in mine[:2]] + [theirs.pk]}

    question = editor.post("/admin/devices/device/", selected)
    assert b"Deactivate 2 devices?" in question.content
    assert Device.objects.filter(is_active=True).count() == 4

    editor.post("/admin/devices/device/", {**selected, "confirmed": "yes"})

    assert list(Device.objects.filter(is_active=False).order_by("pk")) == mine[:2]


def test_the_list_can_be_narrowed_to_deactivated_devices(viewer, tenant, phone):
    make_device(tenant, "tok-dead-" + "d" * 20, user="gone_user").deactivate(reason="UNREGISTERED")

    page = viewer.get("/admin/devices/device/", {"state": "deactivated"}).content.decode()

    assert "gone_user" in page and "ayse_42" not in page


def test_app_users_and_events_are_scoped_too(viewer, phone, other_tenant):
    theirs = make_device(other_tenant, "tok-globex-" + "g" * 20, user="globex_user")
    Event.objects.create(
        tenant=other_tenant,
        user=theirs.user,
        device=theirs,
        name="globex_event",
        occurred_at=theirs.created_at,
        session_id="s",
        fingerprint="g1",
    )

    users = viewer.get("/admin/devices/appuser/").content.decode()
    events = viewer.get("/admin/devices/event/").content.decode()

    assert "ayse_42" in users and "globex_user" not in users
    assert "purchase" in events and "globex_event" not in events
    assert viewer.get(f"/admin/devices/appuser/{theirs.user.pk}/change/").status_code == 404


def test_an_app_users_page_lists_their_devices(viewer, phone):
    page = viewer.get(f"/admin/devices/appuser/{phone.user.pk}/change/").content.decode()

    assert f"/admin/devices/device/{phone.pk}/change/" in page
