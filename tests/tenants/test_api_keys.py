"""API keys: stored as hashes, shown once, revocable, scoped to one tenant."""

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from devices.models import Device
from tenants.models import ApiKey, Tenant


@pytest.fixture
def record(client, event_body):
    def record(tenant_id, api_key):
        body = {**event_body, "tenant_id": tenant_id, "api_key": api_key}
        return client.post("/events", body, format="json")

    return record


@pytest.fixture
def event_body():
    from tests.devices.conftest import EVENT

    return dict(EVENT)


def test_only_a_hash_of_the_key_is_stored(tenant):
    key, raw = ApiKey.generate(tenant=tenant, name="Android", kind="app")

    stored = ApiKey.objects.values().get(pk=key.pk)
    assert raw not in str(stored.values())
    assert stored["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(stored["prefix"])
    assert len(raw) > 40


def test_an_app_key_records_events(record, tenant, app_key):
    assert record(tenant.tenant_id, app_key).status_code == 200


def test_a_server_key_may_also_record_events(record, tenant, server_key):
    assert record(tenant.tenant_id, server_key).status_code == 200


def test_a_revoked_key_is_rejected_with_401(record, tenant):
    key, raw = ApiKey.generate(tenant=tenant, name="old", kind="app")
    key.revoke()

    response = record(tenant.tenant_id, raw)

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "Invalid tenant_id or api_key."}
    assert Device.objects.count() == 0


def test_another_tenants_key_is_rejected_with_401(record, tenant):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    _, foreign_key = ApiKey.generate(tenant=other, name="app", kind="app")

    assert record(tenant.tenant_id, foreign_key).status_code == 401


def test_an_inactive_tenant_is_rejected_with_401(record, tenant, app_key):
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    assert record(tenant.tenant_id, app_key).status_code == 401


def test_a_401_carries_a_www_authenticate_header(record, tenant):
    response = record(tenant.tenant_id, "hrld_app_nope")

    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_a_use_is_recorded_in_last_used_at(record, tenant, app_key):
    record(tenant.tenant_id, app_key)

    assert ApiKey.objects.get().last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute(record, tenant, app_key):
    long_ago = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.update(last_used_at=long_ago)
    record(tenant.tenant_id, app_key)
    first = ApiKey.objects.get().last_used_at

    record(tenant.tenant_id, app_key)

    assert first > long_ago
    assert ApiKey.objects.get().last_used_at == first


def test_create_api_key_prints_a_key_that_works(record, tenant):
    out = StringIO()

    call_command("create_api_key", "acme", "--name", "Web", "--kind", "app", stdout=out, stderr=StringIO())

    raw = out.getvalue().strip()
    assert ApiKey.objects.get(name="Web").kind == "app"
    assert record("acme", raw).status_code == 200


def test_create_api_key_refuses_an_unknown_tenant(db):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("create_api_key", "ghost", "--name", "x", "--kind", "server")
