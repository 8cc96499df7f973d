"""Each web process remembers an accepted key for API_KEY_CACHE_SECONDS, and writes last_used_at
at most once a minute: revocations still take effect within seconds."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants import auth
from tenants.models import ApiKey, Tenant
from tests.devices.conftest import EVENT


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    settings.API_KEY_CACHE_SECONDS = 5
    clock = Clock()
    monkeypatch.setattr(auth.keys, "clock", clock)
    return clock


@pytest.fixture
def record(client, tenant, app_key):
    def record(**overrides):
        body = {**EVENT, "tenant_id": tenant.tenant_id, "api_key": app_key, **overrides}
        return client.post("/events", body, format="json")

    return record


def key_reads(queries) -> int:
    return sum('FROM "tenants_apikey"' in q["sql"] for q in queries)


def test_a_remembered_key_is_not_read_again_within_the_ttl(clock, record):
    assert record().status_code == 200
    clock.now += 4.9

    with CaptureQueriesContext(connection) as queries:
        assert record(session_id="s2").status_code == 200

    assert key_reads(queries.captured_queries) == 0


def test_a_key_revoked_elsewhere_is_refused_once_its_entry_expires(clock, record):
    assert record().status_code == 200
    # Another process (the admin) revokes the key: this one learns of it within the TTL.
    ApiKey.objects.update(revoked_at=timezone.now())

    clock.now += 4.9
    assert record(session_id="s2").status_code == 200
    clock.now += 0.2
    response = record(session_id="s3")

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "Invalid tenant_id or api_key."}


def test_a_tenant_deactivated_elsewhere_is_refused_once_its_entry_expires(clock, record, tenant):
    assert record().status_code == 200
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    clock.now += 5.1

    assert record(session_id="s2").status_code == 401


def test_with_no_cache_a_revocation_takes_effect_at_once(clock, record, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    assert record().status_code == 200

    ApiKey.objects.update(revoked_at=timezone.now())

    assert record(session_id="s2").status_code == 401


def test_an_unknown_key_is_not_remembered_so_a_new_key_works_at_once(clock, client, tenant):
    body = {**EVENT, "tenant_id": tenant.tenant_id}
    assert client.post("/events", {**body, "api_key": "hrld_app_not-yet"}, format="json").status_code == 401

    ApiKey.objects.create(
        tenant=tenant,
        name="late",
        kind="app",
        key_hash=auth.hash_key("hrld_app_not-yet"),
        prefix="hrld_app_not-ye",
    )

    assert client.post("/events", {**body, "api_key": "hrld_app_not-yet"}, format="json").status_code == 200


def test_a_remembered_key_of_another_tenant_is_still_refused(clock, record, app_key, db):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    assert record().status_code == 200

    assert record(tenant_id=other.tenant_id).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute_per_key(clock, record, monkeypatch):
    def last_used_updates(queries) -> int:
        return sum(q["sql"].startswith('UPDATE "tenants_apikey"') for q in queries)

    with CaptureQueriesContext(connection) as queries:
        for n in range(5):
            assert record(session_id=f"a{n}").status_code == 200
            clock.now += 6  # the key is read again now and then; its use is still not rewritten
    assert last_used_updates(queries.captured_queries) == 1
    first = ApiKey.objects.get().last_used_at

    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with CaptureQueriesContext(connection) as queries:
        for n in range(3):
            assert record(session_id=f"b{n}").status_code == 200
    assert last_used_updates(queries.captured_queries) == 1
    assert ApiKey.objects.get().last_used_at == later > first
