"""GET /metrics: off unless configured, guarded by a token and/or networks, added up across processes."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.scrape import TOKEN, scrape, value

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_are_off_when_neither_a_token_nor_networks_are_set(db, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []

    response = Client().get("/metrics")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_a_scrape_without_the_right_token_is_refused(db, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = Client().get("/metrics", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"herald_" not in response.content


def test_a_scrape_with_the_token_gets_the_prometheus_text_format(db, settings):
    settings.METRICS_TOKEN = TOKEN

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE herald_api_requests_total counter" in response.content


def test_a_scraper_that_asks_for_openmetrics_gets_it(db, settings):
    settings.METRICS_TOKEN = TOKEN

    response = Client().get(
        "/metrics",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        HTTP_ACCEPT="application/openmetrics-text; version=1.0.0",
    )

    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")


@pytest.mark.parametrize(
    ("address", "status"), [("10.1.2.3", 200), ("192.168.0.9", 403), ("::1", 200), ("2001:db8::1", 403)]
)
def test_only_addresses_in_the_allowed_networks_may_scrape(db, settings, address, status):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", ["10.0.0.0/8", "::1/128"]

    response = Client(REMOTE_ADDR=address).get("/metrics")

    assert response.status_code == status


def test_with_both_set_a_scrape_needs_the_network_and_the_token(db, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, ["10.0.0.0/8"]

    assert Client(REMOTE_ADDR="10.0.0.1").get("/metrics").status_code == 401
    assert (
        Client(REMOTE_ADDR="11.0.0.1").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code
        == 403
    )
    assert (
        Client(REMOTE_ADDR="10.0.0.1").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code
        == 200
    )


def test_requests_are_counted_by_route_name_not_by_path(db, settings, server_key):
    settings.METRICS_TOKEN = TOKEN
    client = Client(HTTP_X_SERVER_KEY=server_key)
    before = scrape()

    for pk in (1, 2, 3):
        assert client.get(f"/api/v1/messages/{pk}").status_code == 404
    client.get("/no/such/path")

    after = scrape()
    labels = {"endpoint": "message", "method": "GET", "status": "404"}
    assert (
        value(after, "herald_api_requests_total", **labels)
        - value(before, "herald_api_requests_total", **labels)
        == 3
    )
    labels = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    assert (
        value(after, "herald_api_requests_total", **labels)
        - value(before, "herald_api_requests_total", **labels)
        == 1
    )
    assert not any("/api/v1/messages/1" in str(key) for key in after)


COUNT_IN_ANOTHER_PROCESS = """
import django
django.setup()
from api import metrics
metrics.EVENTS_RECORDED.inc({n})
metrics.FCM_LATENCY.labels("200").observe(0.02)
"""


def test_counts_of_every_process_add_up_in_multiprocess_mode(db, settings, tmp_path):
    # Two separate processes (as gunicorn workers and task workers are) count into the
    # directory; a scrape, from yet another process, adds them up.
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    for n in (2, 3):
        subprocess.run(
            [sys.executable, "-c", COUNT_IN_ANOTHER_PROCESS.format(n=n)],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
    settings.METRICS_TOKEN, settings.PROMETHEUS_MULTIPROC_DIR = TOKEN, str(tmp_path)

    samples = scrape()

    assert value(samples, "herald_events_recorded_total") == 5
    assert value(samples, "herald_fcm_request_duration_seconds_count", outcome="200") == 2
    # The database gauges are read once per scrape, not once per process.
    assert value(samples, "herald_metrics_database_up") == 1
