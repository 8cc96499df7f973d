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
