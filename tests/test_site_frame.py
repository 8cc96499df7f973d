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
