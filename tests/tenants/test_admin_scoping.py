"""Who sees which tenant in the admin: superusers all, staff only their memberships."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenants.models import ApiKey, Membership, Tenant
from tenants.scoping import Role, has_role, roles_of, tenants_for
from tests.staff import signed_in, staff_user

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant


def test_a_superuser_sees_every_tenant(superuser, tenant, other_tenant):
    page = superuser.get("/admin/tenants/tenant/").content.decode()

    assert "Acme" in page and "Globex" in page


def test_staff_see_only_the_tenants_they_belong_to(viewer, tenant, other_tenant):
    page = viewer.get("/admin/tenants/tenant/").content.decode()

    assert "Acme" in page and "Globex" not in page


def test_another_tenants_page_is_a_404(viewer, other_tenant):
    assert viewer.get(f"/admin/tenants/tenant/{other_tenant.pk}/change/").status_code == 404
    assert viewer.get(f"/admin/tenants/tenant/{other_tenant.pk}/history/").status_code == 404
    assert viewer.get(f"/admin/tenants/tenant/{other_tenant.pk}/delete/").status_code == 404


def test_a_missing_object_is_a_404_too(viewer):
    assert viewer.get("/admin/tenants/tenant/999999/change/").status_code == 404


def test_a_tenant_admin_can_look_at_their_tenant_but_not_change_it(tenant_admin, tenant):
    page = tenant_admin.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content

    tenant_admin.post(f"/admin/tenants/tenant/{tenant.pk}/change/", {"name": "Hacked", "tenant_id": "acme"})

    tenant.refresh_from_db()
    assert tenant.name == "Acme"


def test_only_superusers_create_tenants(tenant_admin, superuser):
    assert tenant_admin.get("/admin/tenants/tenant/add/").status_code == 403
    assert superuser.get("/admin/tenants/tenant/add/").status_code == 200


def test_only_superusers_see_the_memberships_of_a_tenant(tenant_admin, superuser, tenant):
    assert b"membership_set" not in tenant_admin.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content
    assert b"memberships-TOTAL_FORMS" in superuser.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content


def test_staff_without_a_membership_see_nothing(db):
    lonely = signed_in(staff_user("lonely"))

    assert b"not a member of any tenant" in lonely.get("/admin/").content
    for url in [
        "/admin/tenants/tenant/",
        "/admin/tenants/apikey/",
        "/admin/messaging/message/",
        "/admin/devices/device/",
        "/admin/tenants/firebasecredential/",
    ]:
        assert lonely.get(url).status_code == 403, url


def test_a_staff_member_who_is_no_longer_staff_is_sent_to_log_in(tenant):
    user = staff_user("former", tenant=tenant, role="admin")
    user.is_staff = False
    user.save()

    response = signed_in(user).get("/admin/messaging/message/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_tenant_filter_offers_only_the_users_tenants(tenant, other_tenant):
    third = Tenant.objects.create(name="Initech", tenant_id="initech")
    user = staff_user("two_hats", tenant=tenant, role="admin")
    Membership.objects.create(user=user, tenant=third, role="viewer")

    page = signed_in(user).get("/admin/tenants/apikey/").content.decode()

    assert f"?tenant={tenant.pk}" in page and f"?tenant={third.pk}" in page
    assert f"?tenant={other_tenant.pk}" not in page


def test_filtering_by_a_tenant_outside_the_users_shows_nothing_of_it(viewer, other_tenant):
    ApiKey.generate(tenant=other_tenant, name="Globex backend", kind=ApiKey.Kind.SERVER)

    page = viewer.get(f"/admin/tenants/apikey/?tenant={other_tenant.pk}").content.decode()

    assert "Globex backend" not in page


def test_roles_rank_viewer_editor_admin(tenant, other_tenant):
    user = staff_user("eve", tenant=tenant, role="editor")

    assert has_role(user, tenant, Role.VIEWER) and has_role(user, tenant, Role.EDITOR)
    assert not has_role(user, tenant, Role.ADMIN)
    assert not has_role(user, other_tenant, Role.VIEWER)
    assert list(tenants_for(user, Role.EDITOR)) == [tenant]
    assert list(tenants_for(user, Role.ADMIN)) == []


def test_an_inactive_user_holds_no_role(tenant):
    user = staff_user("gone", tenant=tenant, role="admin")
    user.is_active = False

    assert roles_of(user) == {}
    assert not has_role(user, tenant, Role.VIEWER)


def test_superusers_hold_every_role_in_every_tenant(tenant, other_tenant):
    root = User.objects.create_superuser("root2", "r@example.com", None)

    assert has_role(root, other_tenant, Role.ADMIN)
    assert set(tenants_for(root)) == {tenant, other_tenant}


def test_the_admin_login_page_still_works(db):
    assert Client().get("/admin/login/").status_code == 200


def test_an_admin_of_another_tenant_sees_nothing_of_this_one(outsider, tenant):
    ApiKey.generate(tenant=tenant, name="Acme backend", kind=ApiKey.Kind.SERVER)

    assert "Acme backend" not in outsider.get("/admin/tenants/apikey/").content.decode()
    assert outsider.get(f"/admin/tenants/tenant/{tenant.pk}/change/").status_code == 404
    assert "Acme" not in outsider.get("/admin/").content.decode()
