"""Web apps call the app endpoints from the browser: CORS lets any origin do so."""

import pytest
from django.test import Client

APP_ENDPOINTS = ["/events", "/devices/refresh-token", "/pushes/opened"]


@pytest.mark.parametrize("path", APP_ENDPOINTS)
def test_a_preflight_is_answered_without_credentials(db, path):
    response = Client().options(
        path,
        HTTP_ORIGIN="https://shop.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert response["Access-Control-Allow-Headers"].lower() == "content-type"


@pytest.mark.parametrize("path", APP_ENDPOINTS)
def test_answers_and_errors_carry_cors_headers(db, path):
    response = Client().post(
        path,
        {"tenant_id": "nobody", "api_key": "wrong"},
        content_type="application/json",
        HTTP_ORIGIN="https://shop.example",
    )

    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == "*"


def test_server_endpoints_do_not_invite_browsers(db):
    response = Client().options("/developer/push", HTTP_ORIGIN="https://shop.example")

    assert "Access-Control-Allow-Origin" not in response
