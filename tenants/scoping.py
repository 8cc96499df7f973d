"""Who may see and do what in the admin: tenant memberships and their roles.

Superusers see every tenant and hold every role. Other staff see only the tenants they
have a ``Membership`` in, with that membership's role:

* viewer: looks at everything of the tenant;
* editor: also composes, tests, sends and cancels pushes, and deactivates devices;
* tenant admin: also manages the tenant's API keys and Firebase credential.

A tenant's rows are scoped here, not by Django's per-model permissions: the membership
is the one place that says what a person may do. ``TenantScopedAdminMixin`` applies it
to a ModelAdmin: lists, detail pages (another tenant's object is a 404), choices of
tenant in forms, list filters and actions.
"""

from django.contrib import admin
from django.http import Http404

from tenants.models import Membership, Tenant

Role = Membership.Role
# Each role may do what the roles before it may.
RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


def roles_of(user) -> dict[int, str]:
    """The user's role in each tenant they may see, by tenant pk (cached on the user).

    Superusers get the admin role in every tenant; inactive or non-staff users get none.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active or not user.is_staff:
        return {}
    cached = getattr(user, "_herald_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = dict.fromkeys(Tenant.objects.values_list("pk", flat=True), Role.ADMIN)
        else:
            cached = dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        user._herald_roles = cached
    return cached


def has_role(user, tenant, role: str = Role.VIEWER) -> bool:
    """Whether the user holds `role` (or a higher one) in `tenant` (a Tenant or its pk)."""
    if user.is_active and user.is_staff and user.is_superuser:
        return True
    pk = tenant.pk if isinstance(tenant, Tenant) else tenant
    held = roles_of(user).get(pk)
    return held is not None and RANK[held] >= RANK[role]


def tenant_ids(user, role: str = Role.VIEWER) -> list[int]:
    """The pks of the tenants in which the user holds `role` or a higher one."""
    return [pk for pk, held in roles_of(user).items() if RANK[held] >= RANK[role]]


def tenants_for(user, role: str = Role.VIEWER):
    """The tenants in which the user holds `role` or a higher one, as a queryset."""
    if user.is_active and user.is_staff and user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(pk__in=tenant_ids(user, role))


def role_label(user, tenant) -> str:
    """The user's role in a tenant, as people read it ("Editor"), or "" when they have none."""
    held = roles_of(user).get(tenant.pk if isinstance(tenant, Tenant) else tenant)
    return Role(held).label if held else ""


class TenantListFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the tenants the user may see."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return [(str(t.pk), t.name) for t in tenants_for(request.user)]

    def has_output(self):
        # One tenant is no choice at all.
        return len(self.lookup_choices) > 1

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.model_admin_tenant_path: self.value()})
        return queryset

    def __init__(self, request, params, model, model_admin):
        self.model_admin_tenant_path = model_admin.tenant_path
        super().__init__(request, params, model, model_admin)


class TenantScopedAdminMixin:
    """Scope a ModelAdmin to the tenants of the signed-in staff member.

    ``tenant_path`` is the lookup from the model to its Tenant ("tenant",
    "message__tenant", …). The ``*_role`` attributes name the least role each kind of
    access needs; ``None`` reserves it for superusers.
    """

    tenant_path = "tenant"
    view_role: str | None = Role.VIEWER
    add_role: str | None = Role.EDITOR
    change_role: str | None = Role.EDITOR
    delete_role: str | None = None

    # --- Which rows --------------------------------------------------------------

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.tenant_path}__in": tenant_ids(request.user)})

    def get_object(self, request, object_id, from_field=None):
        # Django's admin answers a missing object with a redirect to the index; an object
        # of another tenant must look exactly like one that does not exist: a 404.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def tenant_of(self, obj):
        """The pk of the tenant an object belongs to."""
        value = obj
        for part in self.tenant_path.split("__"):
            if value is None:
                return None
            if part == "tenant" and hasattr(value, "tenant_id"):
                return value.tenant_id
            value = getattr(value, part)
        return value.pk if isinstance(value, Tenant) else value

    # --- What the user may do -----------------------------------------------------

    def _allowed(self, request, role, obj=None) -> bool:
        if role is None:
            return request.user.is_active and request.user.is_staff and request.user.is_superuser
        if obj is None:
            return bool(tenant_ids(request.user, role))
        return has_role(request.user, self.tenant_of(obj), role)

    def has_module_permission(self, request):
        return self._allowed(request, self.view_role)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, self.view_role, obj) or self.has_change_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self._allowed(request, self.add_role)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, self.change_role, obj)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, self.delete_role, obj)

    def has_role(self, request, role: str, obj=None) -> bool:
        """For custom actions: whether the user holds `role` (for `obj`, or in some tenant)."""
        return self._allowed(request, role, obj)

    # --- What the user sees --------------------------------------------------------

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant" and db_field.related_model is Tenant:
            kwargs["queryset"] = tenants_for(request.user, self.add_role or Role.ADMIN)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        allowed = tenant_ids(request.user, self.add_role or Role.ADMIN)
        if self.tenant_path == "tenant" and "tenant" not in initial and len(allowed) == 1:
            initial["tenant"] = allowed[0]  # one tenant to choose from: choose it
        return initial

    def get_list_filter(self, request):
        # A plain "tenant" filter would list every tenant; offer only the user's.
        return [TenantListFilter if f == self.tenant_path else f for f in super().get_list_filter(request)]

    def changelist_view(self, request, extra_context=None):
        # "Messages", not Django's "Select message to change".
        plural = str(self.opts.verbose_name_plural)
        extra_context = {"title": plural[:1].upper() + plural[1:], **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if len(roles_of(request.user)) <= 1 and self.tenant_path in columns:
            columns.remove(self.tenant_path)  # one tenant: the column says nothing
        return columns


class SecretShownOnceAddMixin:
    """An admin whose add form, once saved, shows a secret once (an API key, a webhook's
    signing secret): there is nothing to continue editing or add after it."""

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
        }
        return super().add_view(request, form_url, extra_context)
