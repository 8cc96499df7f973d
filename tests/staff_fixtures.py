"""Fixtures for admin tests: staff of the `tenant` fixture in each role, and another tenant.

Load them in a test module with ``pytest_plugins = ["tests.staff_fixtures"]``.
"""

import pytest

from tenants.models import Tenant
from tests.staff import signed_in, staff_user


@pytest.fixture
def other_tenant(db):
    return Tenant.objects.create(name="Globex", tenant_id="globex")


@pytest.fixture
def viewer(tenant):
    return signed_in(staff_user("vera", tenant=tenant, role="viewer"))


@pytest.fixture
def editor(tenant):
    return signed_in(staff_user("eddie", tenant=tenant, role="editor"))


@pytest.fixture
def tenant_admin(tenant):
    return signed_in(staff_user("ada", tenant=tenant, role="admin"))


@pytest.fixture
def superuser(db):
    return signed_in(staff_user("root", superuser=True))


@pytest.fixture
def outsider(other_tenant):
    """Staff who is an admin of the other tenant only."""
    return signed_in(staff_user("olga", tenant=other_tenant, role="admin"))
