"""Fixtures every test can use: a tenant with keys, and a JSON client for the API."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from tenants.models import ApiKey, Tenant

# The FCM sandbox's fixtures (fcm_sandbox, sandbox_service_account, sandbox_credential, …).
pytest_plugins = ["tests.sandbox_fixtures", "tests.task_queue"]

# The SQLite test database is a file here (see settings), so worker subprocesses can open it.
(Path(__file__).resolve().parent.parent / "var").mkdir(exist_ok=True)


def pytest_sessionstart(session):
    # CI's second pass names Redis; a Redis that does not answer must fail the run.
    if os.environ.get("HERALD_REQUIRE_REDIS") == "1":
        import redis

        url = os.environ.get("REDIS_URL", "")
        if not url:
            raise pytest.UsageError("HERALD_REQUIRE_REDIS=1 but REDIS_URL is not set")
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()


def pytest_collection_modifyitems(config, items):
    # Tests that need PostgreSQL or Redis skip without them, except where the run demands
    # the service (CI's second pass): there a skip would hide a missing service, so the
    # run fails instead.
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    if os.environ.get("HERALD_REQUIRE_POSTGRES") == "1" and not on_postgres:
        raise pytest.UsageError("HERALD_REQUIRE_POSTGRES=1 but DATABASE_URL is not PostgreSQL")
    has_redis = bool(os.environ.get("REDIS_URL"))
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)"))
        if "redis" in item.keywords and not has_redis:
            item.add_marker(pytest.mark.skip(reason="needs Redis (set REDIS_URL)"))


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # Every test comes from 127.0.0.1: rate-limit counters must not carry over.
    from django.core.cache import cache

    from api import throttling

    cache.clear()
    throttling.reset_local_counters()
    throttling.breaker.close()


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    # Keys remembered by a previous test may name rows that test's rollback removed.
    from tenants.auth import keys

    keys.clear()


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    # The manifest storage needs collectstatic first; tests render pages without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


class FakeClock:
    """A clock tests move by hand: `clock.now += 60`."""

    def __init__(self, now=1_800_000_000.0):  # the start of a minute
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def rate_limit_clock(monkeypatch):
    """The clock rate-limit windows and the Redis circuit breaker are measured by."""
    from api import throttling

    fake = FakeClock()
    monkeypatch.setattr(throttling, "clock", fake)
    return fake


@pytest.fixture
def frozen_clock():
    """The clock stopped at hh:mm:30.000, a little ahead of now, with time-machine: fixed
    rate-limit windows cannot roll over mid-test. `frozen_clock.shift(seconds)` moves it on."""
    start = datetime.now(UTC).replace(second=30, microsecond=0) + timedelta(minutes=1)
    with time_machine.travel(start, tick=False) as traveller:
        yield traveller


@pytest.fixture
def postgres_only():
    assert connection.vendor == "postgresql"


@pytest.fixture
def tenant(db):
    return Tenant.objects.create(name="Acme", tenant_id="acme")


@pytest.fixture
def app_key(tenant):
    """The raw app key of `tenant`."""
    return ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)[1]


@pytest.fixture
def server_key(tenant):
    """The raw server key of `tenant`."""
    return ApiKey.generate(tenant=tenant, name="backend", kind=ApiKey.Kind.SERVER)[1]


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def api(client, tenant, app_key):
    """POST a JSON body to an app endpoint with the tenant's credentials filled in."""

    def post(path, body=None, **credentials):
        payload = {"tenant_id": tenant.tenant_id, "api_key": app_key, **credentials, **(body or {})}
        payload = {k: v for k, v in payload.items() if v is not OMIT}
        return client.post(path, payload, format="json")

    return post


OMIT = object()
