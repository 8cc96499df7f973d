"""Devices, app users and events in the admin, scoped to the staff member's tenants.

All three are written by the app-facing API, never by hand: the pages are read-only.
Editors may deactivate devices (one at a time or in bulk).
"""

from collections import Counter

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from api.csv_export import csv_response
from devices.models import AppUser, Device, Event, hash_token
from devices.selectors import USER_EXPORT_COLUMNS, user_export_rows
from devices.services import deactivate_devices, erase_app_user
from tenants.models import Tenant
from tenants.scoping import Role, TenantScopedAdminMixin, tenant_ids

HISTORY_ROWS = 50


def staff_reason(request) -> str:
    return f"staff: {request.user.get_username()}"[:64]


class DeviceStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("targetable", "Active"),
            ("no_permission", "Active, no push permission"),
            ("deactivated", "Deactivated"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "targetable":
                return queryset.targetable()
            case "no_permission":
                return queryset.filter(is_active=True, push_permission=False)
            case "deactivated":
                return queryset.filter(is_active=False)
        return queryset


class ReadOnlyScopedAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Rows the API writes: staff look at them (and act through actions), never edit them."""

    add_role = change_role = delete_role = None

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(ReadOnlyScopedAdmin):
    list_display = ["device_column", "tenant", "user", "platform", "state_column", "last_seen"]
    list_display_links = ["device_column"]
    list_filter = ["tenant", "platform", DeviceStateFilter, "deactivation_reason"]
    search_fields = ["token", "user__app_user_id"]
    search_help_text = "A token (or part of one) or an app user id."
    list_select_related = ["tenant", "user"]
    list_per_page = 50
    actions = ["deactivate_selected"]
    fieldsets = [
        (None, {"fields": ["tenant", "user", "platform", "token", "token_kind"]}),
        ("State", {"fields": ["is_active", "push_permission", "deactivated_at", "deactivation_reason"]}),
        (
            "Times",
            {
                "fields": ["created_at", "last_seen_at", "token_updated_at", "last_session_id"],
                "classes": ["collapse"],
            },
        ),
    ]

    @admin.display(description="device", ordering="pk")
    def device_column(self, obj):
        return format_html(
            '<span class="hd-platform hd-platform-{}"></span><span class="hd-code">…{}</span>',
            obj.platform,
            obj.token[-12:],
        )

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, obj):
        return format_html(
            '<span title="{}">{} ago</span>', obj.last_seen_at, timesince(obj.last_seen_at, depth=1)
        )

    @admin.display(description="state", ordering="is_active")
    def state_column(self, obj):
        if not obj.is_active:
            return format_html(
                '<span class="hd-chip hd-chip-bad" title="deactivated {}">{}</span>',
                obj.deactivated_at,
                obj.deactivation_reason or "deactivated",
            )
        if not obj.push_permission:
            return mark_safe('<span class="hd-chip hd-chip-warn">no permission</span>')
        return mark_safe('<span class="hd-chip hd-chip-ok">active</span>')

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if len(term) >= 20:
            # A whole token finds its device through the unique index, however long it is.
            results |= queryset.filter(token_hash=hash_token(term))
        return results, may_have_duplicates

    def has_deactivate_permission(self, request, obj=None):
        return self.has_role(request, Role.EDITOR, obj)

    # --- The device page -----------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/deactivate/",
                self.admin_site.admin_view(self.deactivate_view),
                name="devices_device_deactivate",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        device = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "device": device,
            "events": device.events.all()[:HISTORY_ROWS],
            "event_count": device.events.count(),
            "rotations": device.rotations.all()[:HISTORY_ROWS],
            "can_deactivate": device.is_active and self.has_deactivate_permission(request, device),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def deactivate_view(self, request, object_id):
        device = self.get_object(request, object_id)
        if not self.has_deactivate_permission(request, device):
            raise PermissionDenied
        back = reverse("admin:devices_device_change", args=[device.pk])
        if request.method == "POST":
            if device.deactivate(reason=staff_reason(request)):
                messages.success(request, "The device is deactivated: Herald no longer sends to it.")
            return HttpResponseRedirect(back)
        return TemplateResponse(
            request,
            "admin/herald/confirm.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Deactivate device",
                "question": f"Deactivate {device}? Herald stops sending to it until the app registers its "
                "token again.",
                "confirm_label": "Yes, deactivate it",
                "danger": True,
                "back": back,
            },
        )

    @admin.action(description="Deactivate selected devices", permissions=["deactivate"])
    def deactivate_selected(self, request, queryset):
        queryset = queryset.filter(is_active=True)
        editable = set(tenant_ids(request.user, Role.EDITOR))
        allowed = [pk for pk, tenant in queryset.values_list("pk", "tenant_id") if tenant in editable]
        if request.POST.get("confirmed") == "yes":
            count = deactivate_devices(device_ids=allowed, reason=staff_reason(request))
            self.message_user(request, f"Deactivated {count:,} device(s).", messages.SUCCESS)
            return None
        if not allowed:
            self.message_user(request, "None of the selected devices is active.", messages.WARNING)
            return None
        return TemplateResponse(
            request,
            "admin/devices/device/deactivate_selected.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Deactivate devices",
                "ids": allowed,
                "count": len(allowed),
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    fields = [
        "device_link",
        "platform",
        "is_active",
        "push_permission",
        "deactivation_reason",
        "last_seen_at",
    ]
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return True  # the app user page itself is scoped

    @admin.display(description="device")
    def device_link(self, obj):
        return format_html(
            '<a href="{}">…{}</a>', reverse("admin:devices_device_change", args=[obj.pk]), obj.token[-16:]
        )


@admin.register(AppUser)
class AppUserAdmin(ReadOnlyScopedAdmin):
    list_display = [
        "app_user_id",
        "tenant",
        "device_count",
        "language",
        "country",
        "timezone",
        "last_seen_at",
    ]
    list_filter = ["tenant", "is_anonymous", "country"]
    search_fields = ["app_user_id"]
    list_select_related = ["tenant"]
    inlines = [DeviceInline]
    actions = ["erase_selected"]

    @admin.display(description="devices")
    def device_count(self, obj):
        return obj.devices.count()

    def get_urls(self):
        return [
            path("export.csv", self.admin_site.admin_view(self.export_view), name="devices_appuser_export"),
            *super().get_urls(),
        ]

    def export_view(self, request):
        """The users the list shows (its filters and search), as a streamed CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            users = self.get_changelist_instance(request).queryset
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:devices_appuser_changelist"))
        return csv_response(
            header=USER_EXPORT_COLUMNS, rows=user_export_rows(users), filename="app-users.csv"
        )

    def has_erase_permission(self, request, obj=None):
        return self.has_role(request, Role.ADMIN, obj)

    @admin.action(description="Delete the selected users' data", permissions=["erase"])
    def erase_selected(self, request, queryset):
        allowed = set(tenant_ids(request.user, Role.ADMIN))
        users = [
            (pk, tenant, app_user_id)
            for pk, tenant, app_user_id in queryset.values_list("pk", "tenant_id", "app_user_id")
            if tenant in allowed
        ]
        if not users:
            self.message_user(request, "You may not delete the data of the selected users.", messages.WARNING)
            return None
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(
                request,
                "admin/devices/appuser/erase_selected.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Delete users' data",
                    "ids": [pk for pk, _, _ in users],
                    "count": len(users),
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        tenants = Tenant.objects.in_bulk({tenant for _, tenant, _ in users})
        removed = Counter()
        for _, tenant, app_user_id in users:
            removed.update(erase_app_user(tenant=tenants[tenant], app_user_id=app_user_id))
        self.message_user(
            request,
            "Deleted " + ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in removed.items()) + ".",
            messages.SUCCESS,
        )
        return None


@admin.register(Event)
class EventAdmin(ReadOnlyScopedAdmin):
    list_display = ["name", "tenant", "user", "occurred_at", "session_id"]
    list_filter = ["tenant", "name"]
    search_fields = ["name", "user__app_user_id"]
    list_select_related = ["tenant", "user"]
    date_hierarchy = "occurred_at"
    fields = [
        "tenant",
        "user",
        "device",
        "name",
        "occurred_at",
        "received_at",
        "session_id",
        "params",
        "fingerprint",
    ]
