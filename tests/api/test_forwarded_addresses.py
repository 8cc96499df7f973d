"""A client's address is the connection's unless the operator says how many proxies stand in
front (NUM_PROXIES): an X-Forwarded-For a client writes itself names nobody."""

from django.test import Client
from rest_framework.test import APIClient

from tests.devices.conftest import EVENT

LOGIN = "/admin/login/?next=/admin/"


def forged(i: int) -> str:
    return f"198.51.100.{i}"


def test_a_client_naming_itself_anew_in_x_forwarded_for_is_still_held_to_its_per_ip_limit(
    settings, tenant, app_key, rate_limit_clock
):
    settings.RATE_LIMIT_APP_PER_IP = "3/min"
    body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key}

    statuses = [
        APIClient()
        .post("/events", body, format="json", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=forged(i))
        .status_code
        for i in range(5)
    ]

    assert statuses == [200, 200, 200, 429, 429]


def test_a_client_guessing_keys_is_held_to_its_failure_budget_whatever_it_forwards(
    settings, tenant, rate_limit_clock
):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_IP = "2/min"
    body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": "guess"}

    statuses = [
        APIClient()
        .post("/events", body, format="json", REMOTE_ADDR="203.0.113.8", HTTP_X_FORWARDED_FOR=forged(i))
        .status_code
        for i in range(4)
    ]

    assert statuses == [401, 401, 429, 429]


def test_a_forged_x_forwarded_for_does_not_escape_the_admin_sign_in_lockout(db, settings):
    from django.contrib.auth.models import User

    settings.AXES_FAILURE_LIMIT = 3
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.create_user("ayse", password="right-password-1", is_staff=True)

    for i in range(3):
        Client(REMOTE_ADDR="203.0.113.66", HTTP_X_FORWARDED_FOR=forged(i)).post(
            LOGIN, {"username": f"user{i}", "password": "guess"}
        )
    attempt = Client(REMOTE_ADDR="203.0.113.66", HTTP_X_FORWARDED_FOR=forged(9)).post(
        LOGIN, {"username": "ayse", "password": "right-password-1"}
    )

    assert attempt.status_code == 429


def test_a_forged_x_forwarded_for_inside_the_metrics_networks_is_refused(db, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", ["10.0.0.0/8"]

    outside = Client(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.0.0.1").get("/metrics")
    inside = Client(REMOTE_ADDR="10.0.0.1").get("/metrics")

    assert (outside.status_code, inside.status_code) == (403, 200)


def test_behind_one_proxy_the_address_it_forwards_is_the_client_s(
    settings, tenant, app_key, rate_limit_clock
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.RATE_LIMIT_APP_PER_IP = "2/min"
    body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key}

    def via_proxy(client_ip):
        return APIClient().post(
            "/events", body, format="json", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_ip
        )

    assert [via_proxy("203.0.113.7").status_code for _ in range(3)] == [200, 200, 429]
    assert via_proxy("203.0.113.99").status_code == 200
