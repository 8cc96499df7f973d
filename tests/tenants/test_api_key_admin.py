"""Managing keys in the Django admin: shown once on creation, revocable."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenants.models import ApiKey, hash_key


@pytest.fixture
def admin_client(db):
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_creating_a_key_in_the_admin_shows_it_exactly_once(admin_client, tenant):
    response = admin_client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": tenant.pk, "name": "Android", "kind": "app"},
        follow=True,
    )

    page = response.content.decode()
    raw = re.search(r"(hrld_app_[A-Za-z0-9_-]{40,})", page).group(1)
    key = ApiKey.objects.get()
    assert key.key_hash == hash_key(raw)
    assert raw not in admin_client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert raw not in admin_client.get("/admin/tenants/apikey/").content.decode()


def test_revoking_keys_from_the_admin_list(admin_client, tenant, app_key):
    key = ApiKey.objects.get()

    # The action asks first (see test_admin_keys.py); "confirmed" is its confirmation page's answer.
    admin_client.post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk], "confirmed": "yes"}
    )

    key.refresh_from_db()
    assert key.is_revoked
