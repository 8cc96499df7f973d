"""API keys in the admin: tenant admins create (shown once) and revoke (after confirming)."""

import re

import pytest

from tenants.models import ApiKey, hash_key

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant


def create(client, tenant, **fields):
    return client.post(
        "/admin/tenants/apikey/add/",
        {"tenant": tenant.pk, "name": "Order service", "kind": "server", **fields},
    )


def test_a_tenant_admin_creates_a_key_and_sees_it_once_with_a_copy_button(tenant_admin, tenant):
    response = create(tenant_admin, tenant)

    page = response.content.decode()
    raw = re.search(r'<code id="hd-new-key">(hrld_srv_[A-Za-z0-9_-]{40,})</code>', page).group(1)
    key = ApiKey.objects.get(name="Order service")
    assert key.key_hash == hash_key(raw) and key.tenant == tenant
    assert 'data-copy="#hd-new-key"' in page
    assert "no-store" in response["Cache-Control"]
    assert raw not in tenant_admin.get("/admin/tenants/apikey/").content.decode()
    assert raw not in tenant_admin.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()


def test_the_add_form_picks_the_only_tenant_the_admin_has(tenant_admin, tenant):
    page = tenant_admin.get("/admin/tenants/apikey/add/").content.decode()

    assert f'<option value="{tenant.pk}" selected>' in page


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_a_tenant_admin_creates_keys(request, role, tenant):
    client = request.getfixturevalue(role)

    assert client.get("/admin/tenants/apikey/add/").status_code == 403
    assert create(client, tenant).status_code == 403
    assert not ApiKey.objects.exists()


def test_a_tenant_admin_cannot_create_a_key_for_another_tenant(tenant_admin, other_tenant):
    response = create(tenant_admin, other_tenant)

    assert response.status_code == 200 and b"Select a valid choice" in response.content
    assert not ApiKey.objects.exists()


def test_a_viewer_sees_the_keys_with_kind_last_use_and_state_but_no_revoke(viewer, tenant):
    ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)
    ApiKey.generate(tenant=tenant, name="Old backend", kind=ApiKey.Kind.SERVER)[0].revoke()

    page = viewer.get("/admin/tenants/apikey/").content.decode()

    assert "iOS app" in page and "Old backend" in page
    assert ">app<" in page and ">server<" in page and ">revoked<" in page and ">active<" in page
    assert ">never<" in page
    assert "Revoke…" not in page and "revoke_keys" not in page


def test_revoking_a_key_asks_first(tenant_admin, tenant):
    key, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)

    page = tenant_admin.get(f"/admin/tenants/apikey/{key.pk}/revoke/")

    assert page.status_code == 200 and b"gets 401 from now on" in page.content
    key.refresh_from_db()
    assert not key.is_revoked


def test_a_tenant_admin_revokes_a_key_after_confirming(tenant_admin, tenant):
    key, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)

    response = tenant_admin.post(f"/admin/tenants/apikey/{key.pk}/revoke/")

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.is_revoked


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_a_tenant_admin_revokes_keys(request, role, tenant):
    client = request.getfixturevalue(role)
    key, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)

    assert client.get(f"/admin/tenants/apikey/{key.pk}/revoke/").status_code == 403
    assert client.post(f"/admin/tenants/apikey/{key.pk}/revoke/").status_code == 403
    client.post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk], "confirmed": "yes"}
    )
    key.refresh_from_db()
    assert not key.is_revoked


def test_another_tenants_key_is_a_404(tenant_admin, other_tenant):
    key, _ = ApiKey.generate(tenant=other_tenant, name="Globex", kind=ApiKey.Kind.SERVER)

    assert tenant_admin.get(f"/admin/tenants/apikey/{key.pk}/change/").status_code == 404
    assert tenant_admin.post(f"/admin/tenants/apikey/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert not key.is_revoked


def test_the_revoke_action_confirms_then_revokes_only_the_users_keys(tenant_admin, tenant, other_tenant):
    mine, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)
    theirs, _ = ApiKey.generate(tenant=other_tenant, name="Globex", kind=ApiKey.Kind.APP)
    selected = {"action": "revoke_keys", "_selected_action": [mine.pk, theirs.pk]}

    confirm = tenant_admin.post("/admin/tenants/apikey/", selected)
    assert b"Revoke 1 key?" in confirm.content
    mine.refresh_from_db()
    assert not mine.is_revoked

    tenant_admin.post("/admin/tenants/apikey/", {**selected, "confirmed": "yes"})
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.is_revoked and not theirs.is_revoked


def test_a_tenant_admin_may_rename_a_key_but_not_change_what_it_is(tenant_admin, tenant):
    key, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)

    tenant_admin.post(f"/admin/tenants/apikey/{key.pk}/change/", {"name": "iPhone app", "kind": "server"})

    key.refresh_from_db()
    assert (key.name, key.kind) == ("iPhone app", "app")


def test_keys_are_revoked_never_deleted(tenant_admin, tenant):
    key, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)

    assert tenant_admin.post(f"/admin/tenants/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_not_even_a_superuser_is_offered_to_delete_keys(superuser, tenant):
    key, _ = ApiKey.generate(tenant=tenant, name="iOS app", kind=ApiKey.Kind.APP)

    page = superuser.get("/admin/tenants/apikey/").content.decode()
    change_page = superuser.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    deleted = superuser.post(
        "/admin/tenants/apikey/", {"action": "delete_selected", "_selected_action": key.pk, "post": "yes"}
    )

    assert 'value="revoke_keys"' in page
    assert "delete_selected" not in page and "Delete selected" not in page
    assert "deletelink" not in change_page
    assert superuser.post(f"/admin/tenants/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    assert deleted.status_code in (200, 302)
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_a_superuser_manages_the_keys_of_every_tenant(superuser, other_tenant):
    response = create(superuser, other_tenant)

    assert b"hd-new-key" in response.content
    assert ApiKey.objects.get().tenant == other_tenant
