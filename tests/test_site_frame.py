"""What every page leans on: the favicon browsers ask for, and the admin's own 404 page."""

import pytest

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant


def test_favicon_ico_is_an_icon_not_a_json_404(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    body = b"".join(response.streaming_content)
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert "max-age" in response["Cache-Control"]


def test_the_svg_favicon_is_served_too(client):
    response = client.get("/favicon.svg")

    assert response.status_code == 200
    assert b"<svg" in b"".join(response.streaming_content)


@pytest.mark.parametrize("path", ["/admin/no-such-page/", "/admin/messaging/message/999999/change/"])
def test_the_admin_404_page_wears_the_admins_frame(editor, path):
    response = editor.get(path)

    page = response.content.decode()
    assert response.status_code == 404
    assert "herald/herald.css" in page  # styled like every other admin page
    assert "Page not found" in page and 'href="/admin/"' in page
    assert "Log out" in page or "logout" in page  # the user tools are there
    assert 'id="nav-sidebar"' in page


def test_an_api_path_still_gets_a_json_404(client):
    response = client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_the_admin_writes_every_date_one_way(tenant_admin, tenant, sandbox_private_key):
    import json
    import re
    from datetime import UTC, datetime

    from fcm_sandbox.accounts import create_service_account
    from tenants.credentials import set_credentials
    from tenants.models import ApiKey, FirebaseCredential
    from tests.staff import make_device

    when = datetime(2026, 11, 30, 17, 43, tzinfo=UTC)
    key, _ = ApiKey.generate(tenant=tenant, name="Backend", kind=ApiKey.Kind.SERVER)
    ApiKey.objects.filter(pk=key.pk).update(created_at=when, last_used_at=when, revoked_at=when)
    account = create_service_account(
        project_id="acme-push",
        token_uri="https://oauth2.googleapis.com/token",
        client_email="herald@acme-push.iam.gserviceaccount.com",
        private_key_pem=sandbox_private_key,
    )
    credential = set_credentials(tenant=tenant, raw=json.dumps(account))
    FirebaseCredential.objects.filter(pk=credential.pk).update(
        uploaded_at=when, last_checked_at=when, last_check_ok=True
    )
    device = make_device(tenant, "tok-" + "d" * 30, last_seen_at=when)
    device.deactivate(reason="UNREGISTERED")
    type(device).objects.filter(pk=device.pk).update(created_at=when, deactivated_at=when)

    pages = [
        "/admin/tenants/apikey/",
        f"/admin/tenants/apikey/{key.pk}/change/",
        "/admin/tenants/firebasecredential/",
        f"/admin/tenants/firebasecredential/{credential.pk}/change/",
        f"/admin/devices/device/{device.pk}/change/",
    ]
    for url in pages:
        page = tenant_admin.get(url).content.decode()
        assert "30 Nov 2026" in page, url
        assert not re.search(r"\b[ap]\.m\.|Nov\. 30|2026-11-30 17:43", page), url
