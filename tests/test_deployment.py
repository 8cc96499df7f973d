"""Running Herald in production: health checks, deploy checks, headers, logs without secrets."""

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from messaging.tasks import recover_stalled_work
from tests.devices.conftest import EVENT

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_reports_each_dependency(db):
    response = Client().get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["tasks"]["ok"] is True
    if os.environ.get("REDIS_URL"):
        assert body["checks"]["redis"]["ok"] is True


def test_healthz_is_unhealthy_when_no_worker_takes_work(db, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.TASK_BACKEND = "database"
    from django_tasks_db.models import DBTaskResult

    recover_stalled_work.enqueue()
    DBTaskResult.objects.update(enqueued_at=timezone.now() - timedelta(minutes=10))

    response = Client().get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["tasks"]["ok"] is False
    assert "worker" in response.json()["checks"]["tasks"]["error"]


def test_healthz_is_degraded_but_serving_when_redis_is_down(db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = Client().get("/healthz")

    # The API still serves without Redis: a load balancer must not take Herald out.
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"]["ok"] is False


def test_check_deploy_passes_with_production_settings():
    env = {
        **os.environ,
        "DEBUG": "false",
        "HTTPS_ONLY": "true",
        "ALLOWED_HOSTS": "push.example.com",
        "SECRET_KEY": "k3y-" + "x7Q!pZ2m" * 8,
        "DATABASE_URL": "sqlite:////tmp/herald-deploy-check.db",
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_responses_carry_security_headers(db):
    response = Client().get("/healthz")

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_admin_login_is_csrf_protected(db):
    client = Client(enforce_csrf_checks=True)

    response = client.post("/admin/login/", {"username": "a", "password": "b"})

    assert response.status_code == 403


def test_api_errors_are_logged_without_keys_or_bodies(db, tenant, app_key, caplog):
    from config.logging import JsonFormatter

    body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key, "country": "XX"}
    with caplog.at_level(logging.INFO, logger="herald.api"):
        Client().post("/events", body, content_type="application/json")

    [record] = [r for r in caplog.records if r.name == "herald.api"]
    line = json.loads(JsonFormatter().format(record))
    assert (line["status"], line["error"], line["field"], line["tenant"]) == (
        400,
        "invalid_field",
        "country",
        "acme",
    )
    assert app_key not in json.dumps(line) and EVENT["device_token"] not in json.dumps(line)
    assert line["key_prefix"] and app_key.startswith(line["key_prefix"])


@pytest.mark.parametrize("path", ["/events", "/devices/refresh-token", "/pushes/opened"])
def test_a_failed_login_logs_no_secret(db, path, caplog):
    with caplog.at_level(logging.DEBUG):
        Client().post(
            path, {"tenant_id": "acme", "api_key": "hrld_app_secret-guess"}, content_type="application/json"
        )

    assert "secret-guess" not in caplog.text
