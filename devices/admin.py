from django.contrib import admin

from devices.models import AppUser, Device, Event, TokenRotation


class TokenRotationInline(admin.TabularInline):
    model = TokenRotation
    extra = 0
    fields = ["rotated_at", "old_token", "new_token"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tenant", "user", "platform", "push_permission", "is_active",
                    "last_seen_at", "deactivation_reason"]
    list_filter = ["tenant", "platform", "is_active", "push_permission"]
    search_fields = ["token", "user__app_user_id"]
    list_select_related = ["tenant", "user"]
    readonly_fields = ["tenant", "user", "token", "token_kind", "created_at", "last_seen_at",
                       "token_updated_at", "deactivated_at", "deactivation_reason", "last_session_id"]
    inlines = [TokenRotationInline]


@admin.register(AppUser)
class AppUserAdmin(admin.ModelAdmin):
    list_display = ["app_user_id", "tenant", "is_anonymous", "language", "country", "timezone",
                    "last_seen_at"]
    list_filter = ["tenant", "is_anonymous", "country"]
    search_fields = ["app_user_id"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "user", "occurred_at", "session_id", "fingerprint"]
    list_filter = ["tenant", "name"]
    search_fields = ["name", "user__app_user_id", "fingerprint"]
    list_select_related = ["tenant", "user"]
    readonly_fields = ["tenant", "user", "device", "name", "occurred_at", "received_at",
                       "session_id", "params", "fingerprint"]
