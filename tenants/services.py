"""Changes to tenants that touch more than one model."""

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from tenants.models import Membership, Tenant


@transaction.atomic
def create_tenant(
    *,
    tenant_id: str,
    name: str,
    default_language: str = "en",
    time_zone: str = "UTC",
    admin_username: str = "",
    admin_email: str = "",
    admin_password: str = "",
) -> tuple[Tenant, bool]:
    """Create a tenant, and with `admin_username` its first tenant admin; the tenant, and
    whether a new user was created for that admin.

    Everything is validated before anything is written: a ValidationError (with the
    field at fault) leaves no tenant and no user behind. An existing user named
    `admin_username` becomes the tenant's admin with their password unchanged; a new
    one is created as staff (not superuser) with `admin_password`.
    """
    tenant = Tenant(tenant_id=tenant_id, name=name, default_language=default_language, time_zone=time_zone)
    tenant.full_clean()
    user, new_user = None, False
    if admin_username:
        User = get_user_model()
        user = User.objects.filter(username=admin_username).first()
        if user is None:
            new_user = True
            user = User(username=admin_username, email=admin_email, is_staff=True)
            user.full_clean(exclude=["password"])
            try:
                validate_password(admin_password, user)
            except ValidationError as exc:
                raise ValidationError({"password": exc.messages}) from None
            user.set_password(admin_password)
        elif not user.is_staff:
            raise ValidationError(
                {
                    "admin": f"{admin_username!r} exists but is not staff; "
                    "make them staff first or choose another name."
                }
            )
    tenant.save()
    if user is not None:
        user.save()
        Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.ADMIN)
    return tenant, new_user
