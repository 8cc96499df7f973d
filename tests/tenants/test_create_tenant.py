"""`manage.py create_tenant`: an operator creates a tenant and its first admin from the shell."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from tenants.models import Membership, Tenant


def create_tenant(*args: str) -> str:
    out = io.StringIO()
    call_command("create_tenant", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_it_creates_a_tenant_with_its_default_language_and_time_zone():
    printed = create_tenant("shop", "--name", "Shop", "--language", "tr", "--time-zone", "Europe/Istanbul")

    tenant = Tenant.objects.get(tenant_id="shop")
    assert (tenant.name, tenant.default_language, tenant.time_zone, tenant.is_active) == (
        "Shop",
        "tr",
        "Europe/Istanbul",
        True,
    )
    assert "create_api_key shop" in printed


@pytest.mark.django_db
def test_it_defaults_to_english_and_utc():
    create_tenant("shop", "--name", "Shop")

    tenant = Tenant.objects.get(tenant_id="shop")
    assert (tenant.default_language, tenant.time_zone) == ("en", "UTC")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, field",
    [
        (["--language", "english"], "default_language"),
        (["--language", "xx"], "default_language"),
        (["--time-zone", "Mars/Olympus"], "time_zone"),
        (["--time-zone", "+03:00"], "time_zone"),
    ],
)
def test_it_refuses_a_language_or_time_zone_that_does_not_exist_and_stores_nothing(args, field):
    with pytest.raises(CommandError, match=field):
        create_tenant("shop", "--name", "Shop", *args)

    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_tenant_id_apps_could_not_send_or_one_already_taken():
    create_tenant("shop", "--name", "Shop")

    with pytest.raises(CommandError, match="tenant_id"):
        create_tenant("shop", "--name", "Another shop")
    with pytest.raises(CommandError, match="tenant_id"):
        create_tenant("my shop", "--name", "Spaces")
    assert list(Tenant.objects.values_list("name", flat=True)) == ["Shop"]


@pytest.mark.django_db
def test_a_new_admin_gets_a_generated_password_shown_once_that_signs_in_to_the_tenant_only():
    other = Tenant.objects.create(name="Other", tenant_id="other")

    printed = create_tenant(
        "shop", "--name", "Shop", "--admin", "ayse", "--admin-email", "ayse@example.com", "--no-input"
    )

    password = re.search(r"password: (\S+)", printed)[1]
    user = get_user_model().objects.get(username="ayse")
    assert (user.is_staff, user.is_superuser, user.email) == (True, False, "ayse@example.com")
    assert Membership.objects.get(user=user).tenant.tenant_id == "shop"
    assert Membership.objects.get(user=user).role == Membership.Role.ADMIN
    browser = Client()
    signed_in = browser.post("/admin/login/", {"username": "ayse", "password": password})
    assert signed_in.status_code == 302
    keys = browser.get("/admin/tenants/apikey/add/")
    assert keys.status_code == 200
    assert f'value="{other.pk}"' not in keys.content.decode()


@pytest.mark.django_db
def test_an_existing_staff_user_becomes_admin_with_their_password_unchanged():
    user = get_user_model().objects.create_user("ayse", password="old-secret-pw-1", is_staff=True)

    printed = create_tenant("shop", "--name", "Shop", "--admin", "ayse", "--no-input")

    user.refresh_from_db()
    assert user.check_password("old-secret-pw-1")
    assert "password unchanged" in printed
    assert Membership.objects.get(user=user).role == Membership.Role.ADMIN


@pytest.mark.django_db
def test_an_invalid_admin_name_leaves_no_tenant_behind():
    with pytest.raises(CommandError, match="username"):
        create_tenant("shop", "--name", "Shop", "--admin", "not a valid name!", "--no-input")

    assert not Tenant.objects.exists()
    assert not get_user_model().objects.exists()
