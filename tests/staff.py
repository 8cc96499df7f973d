"""Helpers for admin tests: staff users with a role, devices, messages and deliveries.

The fixtures built on them (viewer, editor, tenant_admin, superuser, outsider, other_tenant)
are in ``tests.staff_fixtures``; a module loads them with ``pytest_plugins``.
"""

from django.contrib.auth.models import User
from django.test import Client

from devices.models import AppUser, Device
from messaging.models import Delivery, Message
from tenants.models import Membership


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def staff_user(username: str, *, tenant=None, role: str = "viewer", superuser: bool = False) -> User:
    user = User.objects.create_user(
        username, f"{username}@example.com", None, is_staff=True, is_superuser=superuser
    )
    if tenant is not None:
        Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


def make_device(
    tenant,
    token,
    *,
    user="user_1",
    platform="android",
    permission=True,
    country="TR",
    language="tr",
    **fields,
) -> Device:
    app_user, _ = AppUser.objects.get_or_create(
        tenant=tenant, app_user_id=user, defaults={"country": country, "language": language}
    )
    return Device.objects.create(
        tenant=tenant, user=app_user, token=token, platform=platform, push_permission=permission, **fields
    )


def make_message(tenant, *, title="Hello", status=Message.Status.COMPLETED, **fields) -> Message:
    return Message.objects.create(tenant=tenant, title=title, body="World", status=status, **fields)


def make_delivery(message, device, *, status=Delivery.Status.SENT, **fields) -> Delivery:
    return Delivery.objects.create(message=message, device=device, status=status, **fields)
